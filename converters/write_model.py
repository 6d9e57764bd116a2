"""Writes a SourceModel to a `.edgt` file under a quantization recipe, one tensor at a time, with
a progress bar and provenance in the metadata."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

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


PER_LAYER_HPARAMS = ("layer_types", "layer_intermediate_size", "layer_num_heads", "layer_num_kv_heads")


def keep_layers(model: SourceModel, layers: Sequence[int]) -> SourceModel:
    """A copy of model with only these transformer blocks, renumbered 0.. in the given order:
    a pruned (shallower) model with the same vocabulary, e.g. a draft for speculative decoding."""
    from edgert.errors import InvalidArgumentError
    n = int(model.hparams["num_layers"])
    layers = [int(i) for i in layers]
    if not layers or any(not 0 <= i < n for i in layers) or len(set(layers)) != len(layers):
        raise InvalidArgumentError(f"layers must be distinct block indices in [0, {n}), got {layers}")
    renumber = {old: new for new, old in enumerate(layers)}
    tensors = []
    for t in model.tensors:
        if t.name.startswith("blk."):
            block, rest = t.name[4:].split(".", 1)
            if int(block) not in renumber:
                continue
            t = dataclasses.replace(t, name=f"blk.{renumber[int(block)]}.{rest}")
        tensors.append(t)
    hp = dict(model.hparams, num_layers=len(layers))
    # Per-layer hparams (sliding-window layer_types, a pruned model's widths) follow their blocks.
    for key in PER_LAYER_HPARAMS:
        if hp.get(key) is not None:
            hp[key] = [model.hparams[key][i] for i in layers]
    return dataclasses.replace(model, hparams=hp, tensors=tensors,
                               name=f"{model.name} (blocks {','.join(map(str, layers))})")


def write_model(model: SourceModel, out: Path, *, recipe: str, sources: list[Path], source_label: str,
                progress: bool | None = None, layers: Sequence[int] | None = None) -> Path:
    if layers is not None:
        model = keep_layers(model, layers)
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
        **({"generation_config": model.generation_config} if model.generation_config else {}),
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
