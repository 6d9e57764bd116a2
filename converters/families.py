"""The model families, parsed at import time from the runtime's own table (families.def, a symlink
to native/src/models/ that ships inside the package), so the converters write exactly the
architectures and tensors the runtime expects: each row is a family's declared differences from
Llama, and the per-family facts of the readers (Hugging Face class names, GGUF conventions) sit
next to their reader, keyed by these names."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_DEF = Path(__file__).with_name("families.def")
_B = r"\s*(true|false)\s*"
_ROW = re.compile(r'^\s*X\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(\w+)\s*,' + ",".join([_B] * 4) + r"\)")


@dataclass(frozen=True)
class Family:
    id: str                 # e.g. "GEMMA2"
    architecture: str       # the metadata value, e.g. "gemma2"
    ffn_activation: str     # "SILU" or "GELU_TANH"
    qk_norm: bool
    post_norms: bool
    embed_scale: bool
    hf_norm_plus_one: bool  # Hugging Face stores w of x * (1 + w); the file stores 1 + w


def _parse(text: str) -> dict[str, Family]:
    rows = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            flags = [m[i] == "true" for i in range(4, 8)]
            rows[m[2]] = Family(m[1], m[2], m[3], *flags)
    if not rows:
        raise RuntimeError(f"no X(...) rows found in {_DEF}")
    return rows


FAMILIES: dict[str, Family] = _parse(_DEF.read_text(encoding="utf-8"))
