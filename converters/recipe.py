"""Quantization recipes: which dtype each tensor is written in.

`keep` writes every tensor in its source dtype. A dtype name writes every matrix in that dtype.
Always: 1-D tensors (norms, biases, rope_freqs) are f32, because the runtime reads them as f32 and
they are tiny.

Legacy recipes (q4_0, q4_1, q3_0): the embedding/output matrix gets q8_0, as llama.cpp does for
its legacy types: it is the one tensor whose error reaches the logits directly.

K-quant recipes follow llama.cpp's `llama-quantize` (llama_tensor_get_type, no importance matrix,
no MoE, not Falcon, not 70B):
  output.weight (or token_embd.weight when the embeddings are tied): q6_k, q8_0 if its rows are
  not whole 256-element super-blocks; an untied token_embd.weight keeps the recipe's base type;
  q4_k_m / q5_k_m: attn_v and ffn_down one type up (q6_k) in the layers use_more_bits() picks
      (the first and last eighth of the layers and every third one between);
  q4_k_s: attn_v of layers 0-3 and ffn_down of the first eighth in q5_k;
  q3_k_m: attn_v of layers 0-1 in q5_k, the other attn_v in q4_k; ffn_down in q5_k for the first
      sixteenth, else q4_k; attn_output in q4_k.
  A matrix whose rows are not whole super-blocks falls back as llama.cpp does (q4_k -> q5_0,
  q5_k -> q5_1, q6_k -> q8_0, q3_k -> q4_0, iq4_xs -> iq4_nl; checked against the files
  llama-cpp-python 0.3.36's llama_model_quantize writes), except the single-type `q3_k` recipe:
  there q3_k falls back to edgert's 3-bit q3_0 so the whole model stays at ~3.5 bits per weight
  (llama.cpp's q4_0 fallback puts SmolLM2's 576-wide matrices at 4.5).
A matrix whose rows are not whole 32-blocks falls back to f16.
"""
from __future__ import annotations

import re

from .dtypes import BY_NAME, F16, F32, IQ4_NL, IQ4_XS, Q3_0, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, DType

_PLAIN = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q3_0", "iq4_nl", "iq4_xs",
          "q3_k", "q4_k", "q5_k", "q6_k")
# Mixture recipe -> its base type.
_MIXTURES = {"q3_k_m": Q3_K, "q4_k_s": Q4_K, "q4_k_m": Q4_K, "q5_k_m": Q5_K}
RECIPES = ("keep",) + _PLAIN + tuple(_MIXTURES)
_EMBED_OUT = ("token_embd.weight", "output.weight")
_LEGACY_4BIT = (Q4_0, Q4_1, Q3_0)
_K_TYPES = (Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS)
K_FALLBACK = {Q3_K: Q4_0, Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0, IQ4_XS: IQ4_NL}


def k_fallback(want: DType, *, all_3bit: bool) -> DType:
    """What a super-block type is written as in rows that are not whole 256-column blocks: one
    type up as llama.cpp does (q3_k -> q4_0, q4_k -> q5_0, ...), except that a 3-bit file (the
    `q3_k` recipe, `edgert compress --quant q3_k`) keeps 3 bits with edgert's q3_0."""
    return Q3_0 if (want is Q3_K and all_3bit) else K_FALLBACK[want]


_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits in the _M mixtures."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _mixture(name: str, base: DType, recipe: str, n_layers: int | None) -> DType:
    m = _LAYER.match(name)
    if m is None or n_layers is None:
        return base
    i, rest = int(m.group(1)), m.group(2)
    if rest == "attn_v.weight":
        if recipe == "q3_k_m":
            return Q5_K if i < 2 else Q4_K
        if recipe in ("q4_k_m", "q5_k_m") and use_more_bits(i, n_layers):
            return Q6_K
        if recipe == "q4_k_s" and i < 4:
            return Q5_K
    elif rest == "ffn_down.weight":
        if recipe == "q3_k_m":
            return Q5_K if i < n_layers // 16 else Q4_K
        if recipe in ("q4_k_m", "q5_k_m") and use_more_bits(i, n_layers):
            return Q6_K
        if recipe == "q4_k_s" and i < n_layers // 8:
            return Q5_K
    elif rest == "attn_output.weight" and recipe == "q3_k_m":
        return Q4_K
    return base


def target_dtype(name: str, shape: tuple[int, ...], source: DType, recipe: str, *,
                 n_layers: int | None = None, tied_embeddings: bool = False) -> DType:
    """The dtype tensor `name` of `shape` is written in under `recipe`. n_layers (the model's layer
    count) drives the per-layer choices of the mixtures; tied_embeddings says token_embd.weight is
    also the output matrix."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown quantization recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if len(shape) == 1:
        return F32
    if recipe == "keep":
        want = source
    elif recipe in _MIXTURES:
        want = _mixture(name, _MIXTURES[recipe], recipe, n_layers)
    else:
        want = BY_NAME[recipe]
    base = _MIXTURES.get(recipe, BY_NAME.get(recipe))
    is_output = name == "output.weight" or (tied_embeddings and name == "token_embd.weight")
    if base in _LEGACY_4BIT and name in _EMBED_OUT:
        want = Q8_0
    elif base in _K_TYPES and is_output:
        want = Q6_K if shape[-1] % Q6_K.block_size == 0 else Q8_0
    if want in _K_TYPES and shape[-1] % want.block_size:
        want = k_fallback(want, all_3bit=recipe == "q3_k")
    if want.is_block and shape[-1] % want.block_size:
        want = F16
    return want


def is_4bit(dtype: DType) -> bool:
    return dtype in (Q4_0, Q4_1)
