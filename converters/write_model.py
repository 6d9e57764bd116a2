"""Writes a SourceModel to a `.edgt` file under a quantization recipe, one tensor at a time, with
a progress bar and provenance in the metadata."""
from __future__ import annotations

import datetime
import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from . import quantize
from .dtypes import DType
from .end_of_turn import end_of_turn_ids
from .edgt_file import EdgtWriter, TensorSpec
from .recipe import target_dtype
from .source_model import SourceModel

CONVERTER_VERSION = "0.1.0"


def sha256_of(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _convert_tensor(raw: np.ndarray, src: DType, dst: DType, shape: tuple[int, ...]) -> np.ndarray:
    if src is dst:
        return raw
    return quantize.encode(quantize.decode(raw, src, shape), dst)


def _progress(total: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="tensor", desc="converting", file=sys.stderr)


def write_model(model: SourceModel, out: Path, *, recipe: str, sources: list[Path], source_label: str,
                progress: bool | None = None) -> Path:
    n_layers = int(model.hparams.get("num_layers", 0)) or None
    tied = bool(model.hparams.get("tie_embeddings", False))
    specs = [TensorSpec(t.name, target_dtype(t.name, t.shape, t.dtype, recipe, n_layers=n_layers,
                                             tied_embeddings=tied), t.shape) for t in model.tensors]
    # Generation stops on the chat template's end-of-turn token too (the file may list only its
    # end-of-text token as EOS).
    eos = list(model.tokenizer.get("eos_token_ids") or [])
    eos += [i for i in end_of_turn_ids(model.chat_template, model.tokenizer) if i not in eos]
    model.tokenizer["eos_token_ids"] = eos
    counts = Counter(s.dtype.name for s in specs)
    metadata: dict[str, Any] = {
        "format": "edgert",
        "format_version": 1,
        "architecture": model.architecture,
        "name": model.name,
        "hparams": model.hparams,
        "tokenizer": model.tokenizer,
        "chat_template": model.chat_template,
        "quantization": {"recipe": recipe, "tensor_types": dict(sorted(counts.items()))},
        "provenance": {
            "source": source_label,
            "source_format": model.source_format,
            "source_sha256": sha256_of(sources),
            "converter": f"edgert.converters {CONVERTER_VERSION}",
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    bar = _progress(len(specs), progress)
    try:
        with EdgtWriter(out, metadata, specs) as w:
            for t, spec in zip(model.tensors, specs):
                raw = np.asarray(t.load()).reshape(-1).view(np.uint8)
                w.write(t.name, _convert_tensor(raw, t.dtype, spec.dtype, t.shape))
                if bar is not None:
                    bar.set_postfix_str(t.name, refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out
