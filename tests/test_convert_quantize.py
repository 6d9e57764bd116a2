"""The numpy quantizers are bit-exact with the `gguf` package (a port of ggml's reference C), and
the recipes put each tensor in the dtype the docs promise."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as G
from gguf import quants

from converters import quantize
from converters.dtypes import BF16, F16, F32, Q4_0, Q4_1, Q8_0
from converters.recipe import target_dtype

PAIRS = [(Q8_0, G.Q8_0), (Q4_0, G.Q4_0), (Q4_1, G.Q4_1), (BF16, G.BF16)]


def _hard_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 256)).astype(np.float32) * rng.uniform(1e-4, 100, (64, 1)).astype(np.float32)
    x[0] = 0                                                   # all-zero block: d = 0
    x[1, :32] = np.float32(3.0)                                # constant block
    x[2, :32] = np.linspace(-1, 1, 32, dtype=np.float32)       # exact .5 ties after scaling
    x[3, :32] = -x[3, :32].max()                               # largest magnitude negative
    x[4] = np.float32(1e-30)                                   # scales that underflow in f16
    x[5, :32] = np.arange(32, dtype=np.float32) - 16
    return x


@pytest.mark.parametrize("mine,theirs", PAIRS, ids=lambda p: getattr(p, "name", ""))
def test_bit_exact_with_gguf(mine, theirs):
    x = _hard_data()
    ours = quantize.encode(x, mine)
    ref = quants.quantize(x, theirs).reshape(-1).view(np.uint8)
    assert ours.tobytes() == ref.tobytes()


@pytest.mark.parametrize("mine,theirs", PAIRS, ids=lambda p: getattr(p, "name", ""))
def test_dequantize_matches_gguf(mine, theirs):
    x = _hard_data()
    raw = quants.quantize(x, theirs)
    np.testing.assert_array_equal(quantize.decode(raw, mine, x.shape), quants.dequantize(raw, theirs))


def test_f16_and_f32_round_trip():
    x = _hard_data()
    np.testing.assert_array_equal(quantize.decode(quantize.encode(x, F32), F32, x.shape), x)
    np.testing.assert_array_equal(quantize.decode(quantize.encode(x, F16), F16, x.shape),
                                  x.astype(np.float16).astype(np.float32))


def test_block_quantizer_needs_whole_blocks():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize.encode(np.zeros((2, 40), np.float32), Q8_0)


def test_recipes():
    assert target_dtype("blk.0.attn_norm.weight", (64,), F16, "q4_0") is F32
    assert target_dtype("blk.0.attn_q.bias", (64,), BF16, "keep") is F32
    assert target_dtype("blk.0.attn_q.weight", (64, 64), BF16, "keep") is BF16
    assert target_dtype("blk.0.attn_q.weight", (64, 64), F32, "q4_1") is Q4_1
    assert target_dtype("token_embd.weight", (512, 64), F32, "q4_0") is Q8_0
    assert target_dtype("output.weight", (512, 64), F32, "q4_1") is Q8_0
    assert target_dtype("token_embd.weight", (512, 64), F32, "q8_0") is Q8_0
    assert target_dtype("blk.0.ffn_down.weight", (64, 172), F32, "q4_0") is F16  # 172 % 32 != 0
    with pytest.raises(ValueError, match="recipe"):
        target_dtype("x", (64, 64), F32, "q2_k")
