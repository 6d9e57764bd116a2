"""The in-memory description every reader (HF, GGUF, llama2.c) produces and `write_model` consumes:
hyper-parameters, tokenizer facts and a list of lazily loaded tensors, already renamed to the
registry's names and with Q/K rows in the Hugging Face RoPE order."""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .dtypes import DType


@dataclass
class SourceTensor:
    name: str                          # registry name, e.g. "blk.0.attn_q.weight"
    shape: tuple[int, ...]             # outermost first
    dtype: DType                       # how `load()` returns it
    load: Callable[[], np.ndarray]     # raw bytes of `dtype` (flat uint8), read on demand


@dataclass
class SourceModel:
    source_format: str                 # "hf", "gguf" or "llama2c"
    name: str
    hparams: dict[str, Any]
    tokenizer: dict[str, Any]          # the `tokenizer` object of the metadata
    chat_template: str | None
    tensors: list[SourceTensor] = field(default_factory=list)
    architecture: str = "llama"        # a row of families.def
    # The model's own sampling defaults (metadata `generation_config`), when the source has them.
    generation_config: dict[str, Any] | None = None


# Sampling keys a generation config may carry into the metadata, with their types and the range
# edgert's sampler accepts (SamplerParams.validate).
GENERATION_KEYS: dict[str, type] = {"do_sample": bool, "temperature": float, "top_k": int,
                                    "top_p": float, "min_p": float, "repetition_penalty": float}
_GENERATION_RANGES = {"temperature": (0.0, 1e6), "top_k": (0, 2**31 - 1), "top_p": (0.0, 1.0),
                      "min_p": (0.0, 1.0), "repetition_penalty": (1e-6, 1e6)}


def generation_defaults(src: dict[str, Any]) -> dict[str, Any] | None:
    """The sampling keys of a Hugging Face generation_config.json (or the same keys from
    another source), type-checked; None when it has none (bos/eos ids alone are no defaults).
    The values are advice: one of the wrong type, non-finite or outside the sampler's range is
    left out (the model still converts; chat then uses edgert's default for that key)."""
    out: dict[str, Any] = {}
    for key, typ in GENERATION_KEYS.items():
        v = src.get(key)
        if v is None or isinstance(v, bool) != (typ is bool):
            continue
        if typ is not bool and not isinstance(v, (int, float)):
            continue
        if typ is not bool:
            lo, hi = _GENERATION_RANGES[key]
            if not (math.isfinite(v) and lo <= v <= hi) or (typ is int and v != int(v)):
                continue
        out[key] = typ(v)
    return out or None


def rope_rows_to_hf_order(n_rows: int, n_heads: int) -> np.ndarray:
    """Row gather index that turns Q/K weights stored for interleaved RoPE (Meta, llama2.c and
    GGUF order: pairs (2i, 2i+1)) into Hugging Face's rotate_half order (pairs (i, i + Dh/2)).

    Within a head the stored row 2i+h (h in {0,1}) is HF row h*Dh/2 + i; `hf = stored[index]`.
    Whole rows move, so quantized blocks are carried unchanged."""
    if n_rows % n_heads or (n_rows // n_heads) % 2:
        raise ValueError(f"{n_rows} rows do not split into {n_heads} heads of even size")
    half = n_rows // n_heads // 2
    idx = np.arange(n_rows).reshape(n_heads, half, 2)   # stored layout (head, i, h)
    return idx.transpose(0, 2, 1).reshape(-1)           # HF layout (head, h, i)


def permuted_loader(load: Callable[[], np.ndarray], n_rows: int, n_heads: int) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        raw = np.asarray(load()).reshape(n_rows, -1)
        return raw[rope_rows_to_hf_order(n_rows, n_heads)].reshape(-1)
    return run


def row_slice_loader(load: Callable[[], np.ndarray], n_rows: int, r0: int, r1: int) -> Callable[[], np.ndarray]:
    """Rows [r0, r1) of a tensor stored as n_rows whole rows: how fused tensors (Phi-3's qkv and
    gate_up) are split. Whole rows move, so quantized blocks are carried unchanged."""
    def run() -> np.ndarray:
        return np.asarray(load()).reshape(n_rows, -1)[r0:r1].reshape(-1)
    return run
