"""Quantization recipes: which dtype each tensor is written in.

`keep` writes every tensor in its source dtype. A dtype name writes every matrix in that dtype.
Always: 1-D tensors (norms, biases, rope_freqs) are f32, because the runtime reads them as f32 and
they are tiny. Under 4-bit recipes the embedding/output matrix gets q8_0, as llama.cpp does: it is
the one tensor whose error reaches the logits directly. A matrix whose rows are not whole blocks
falls back to f16.
"""
from __future__ import annotations

from .dtypes import BY_NAME, F16, F32, Q4_0, Q4_1, Q8_0, DType

RECIPES = ("keep", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1")
_EMBED_OUT = ("token_embd.weight", "output.weight")


def target_dtype(name: str, shape: tuple[int, ...], source: DType, recipe: str) -> DType:
    if recipe not in RECIPES:
        raise ValueError(f"unknown quantization recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if len(shape) == 1:
        return F32
    want = source if recipe == "keep" else BY_NAME[recipe]
    if recipe in ("q4_0", "q4_1") and name in _EMBED_OUT:
        want = Q8_0
    if want.is_block and shape[-1] % want.block_size:
        want = F16
    return want


def is_4bit(dtype: DType) -> bool:
    return dtype in (Q4_0, Q4_1)
