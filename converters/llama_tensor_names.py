"""The `llama`-architecture tensor names, parsed at import time from the runtime's own X-macro
table (llama_tensor_names.def, a symlink to native/src/models/ that ships inside the package), so
the converters and the C++ loader share one registry and cannot drift apart."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_DEF = Path(__file__).with_name("llama_tensor_names.def")
_ROW = re.compile(r'^\s*X\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(true|false)\s*,\s*(true|false)\s*\)')


@dataclass(frozen=True)
class TensorName:
    id: str          # e.g. "ATTN_Q"
    pattern: str     # e.g. "blk.%d.attn_q.weight"
    per_layer: bool
    optional: bool

    def format(self, layer: int | None = None) -> str:
        if self.per_layer:
            if layer is None:
                raise ValueError(f"{self.id} is per layer; pass the block index")
            return self.pattern.replace("%d", str(layer))
        return self.pattern


def _parse(text: str) -> dict[str, TensorName]:
    rows = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            rows[m[1]] = TensorName(m[1], m[2], m[3] == "true", m[4] == "true")
    if not rows:
        raise RuntimeError(f"no X(...) rows found in {_DEF}")
    return rows


NAMES: dict[str, TensorName] = _parse(_DEF.read_text(encoding="utf-8"))


def name(id: str, layer: int | None = None) -> str:
    """The tensor name for registry id `id` (and block index `layer` for per-layer tensors)."""
    return NAMES[id].format(layer)
