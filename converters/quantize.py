"""numpy quantizers and dequantizers for the edgert dtypes.

The block quantizers reproduce ggml's reference C code (`quantize_row_q8_0_ref` and friends)
bit for bit, which is what the `gguf` package's numpy port does too; tests/test_convert_quantize.py
holds them to that. Every operation is done in float32 in the same order as the C code, because
a float64 intermediate would round differently on ties.
"""
from __future__ import annotations

import numpy as np

from .dtypes import BF16, F16, F32, Q4_0, Q4_1, Q8_0, DType

QK = 32


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % QK:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of {QK}")
    return x.reshape(-1, QK)


def _inverse_scale(d: np.ndarray) -> np.ndarray:
    # C: `id = d ? 1.0f/d : 0.0f`
    safe = np.where(d == 0, np.float32(1), d)
    return np.where(d == 0, np.float32(0), np.float32(1) / safe).astype(np.float32)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    # C roundf(); a - floor(a) is exact in float32, so the 0.5 comparison has no rounding error.
    a = np.abs(v)
    f = np.floor(a)
    return np.copysign(f + (a - f >= np.float32(0.5)), v)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    # Element j goes to the low nibble of byte j, element j+16 to its high nibble.
    return (q[:, :16] | (q[:, 16:] << np.uint8(4))).astype(np.uint8)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    d = (np.abs(b).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    q = _round_half_away(b * _inverse_scale(d)).astype(np.int8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    # The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used.
    idx = np.abs(b).argmax(axis=1)[:, None]
    d = (np.take_along_axis(b, idx, axis=1) / np.float32(-8)).astype(np.float32)
    q = np.trunc(b * _inverse_scale(d) + np.float32(8.5)).astype(np.int32)
    q = np.minimum(q, 15).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), _pack_nibbles(q)], axis=1)


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    lo = b.min(axis=1, keepdims=True)
    hi = b.max(axis=1, keepdims=True)
    d = ((hi - lo) / np.float32(15)).astype(np.float32)
    q = np.trunc((b - lo) * _inverse_scale(d) + np.float32(0.5)).astype(np.int32)
    q = np.minimum(q, 15).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8),
                           lo.astype(np.float16).view(np.uint8), _pack_nibbles(q)], axis=1)


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even, NaN kept quiet (ggml_compute_fp32_to_bf16)."""
    n = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    n = np.where((n & 0x7FFFFFFF) > 0x7F800000, (n & np.uint32(0xFFFF0000)) | np.uint32(64 << 16), n)
    n = (n.astype(np.uint64) + (0x7FFF + ((n >> 16) & 1))) >> 16
    return n.astype(np.uint16)


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def encode(x: np.ndarray, dtype: DType) -> np.ndarray:
    """Float array -> the raw bytes of `dtype`, as a flat uint8 array."""
    if dtype is F32:
        out = np.ascontiguousarray(x, dtype=np.float32)
    elif dtype is F16:
        out = np.ascontiguousarray(x, dtype=np.float32).astype(np.float16)
    elif dtype is BF16:
        out = to_bf16_bits(x)
    elif dtype is Q8_0:
        out = quantize_q8_0(x)
    elif dtype is Q4_0:
        out = quantize_q4_0(x)
    elif dtype is Q4_1:
        out = quantize_q4_1(x)
    else:
        raise ValueError(f"no encoder for {dtype.name}")
    return out.reshape(-1).view(np.uint8)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def decode(raw: np.ndarray, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    """Raw bytes of `dtype` -> float32 array of `shape`."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if dtype is F32:
        out = raw.view(np.float32)
    elif dtype is F16:
        out = raw.view(np.float16).astype(np.float32)
    elif dtype is BF16:
        out = bf16_bits_to_f32(raw.view(np.uint16))
    else:
        blk = raw.reshape(-1, dtype.block_bytes)
        d = blk[:, 0:2].copy().view(np.float16).astype(np.float32)
        if dtype is Q8_0:
            out = d * blk[:, 2:].view(np.int8).astype(np.float32)
        elif dtype is Q4_0:
            out = d * (_unpack_nibbles(blk[:, 2:]).astype(np.float32) - np.float32(8))
        elif dtype is Q4_1:
            m = blk[:, 2:4].copy().view(np.float16).astype(np.float32)
            out = d * _unpack_nibbles(blk[:, 4:]).astype(np.float32) + m
        else:
            raise ValueError(f"no decoder for {dtype.name}")
    return out.reshape(shape)
