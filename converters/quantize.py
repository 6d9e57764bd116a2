"""numpy quantizers and dequantizers for the edgert dtypes.

The legacy block quantizers (q8_0, q4_0, q4_1, q5_0, q5_1) reproduce ggml's reference C code
(`quantize_row_q8_0_ref` and friends) bit for bit, which is what the `gguf` package's numpy port
does too; tests/test_convert_quantize.py holds them to that. Every operation is done in float32 in
the same order as the C code, because a float64 intermediate would round differently on ties.

The super-block quantizers (q3_k, q4_k, q5_k, q6_k) follow ggml's reference algorithms (the ones
`llama-quantize` runs without an importance matrix: per-sub-block scale search, then the
sub-block scales quantized against one f16 super-block scale, then every value re-rounded on the
final grid), vectorized over all sub-blocks of a tensor. Their sums are numpy's, so a file may
differ from llama.cpp's in a few ties; the quality does not (tests/test_quant_types.py).

Every decoder reads the byte layout of docs/format.md; tests compare them with
`gguf.quants.dequantize`.

GPTQ-style callers (edgert's compress stages) quantize column by column on a fixed grid. For the
3-bit types the grid is exposed in three steps:
  d, sc = q3_k_scales(w)            # w [n, 256]: one super-block per row; d f16-exact float32 [n],
                                    #   sc int8 [n, 16] in -32..31 (sub-block k = elements 16k..16k+15)
  step = q3_k_steps(d, sc)          # float32 [n, 256]: value = step * (code - 4), code in 0..7
  codes = q3_k_codes(w, d, sc)      # round to nearest on that grid (or the caller's own codes)
  raw = q3_k_pack(codes, d, sc)     # uint8 [n, 110], the q3_k bytes
and likewise q3_0_scales / q3_0_steps / q3_0_codes / q3_0_pack for 32-element blocks ([n, 32],
d [n], raw [n, 14]). `encode(x, Q3_K)` is exactly scales -> codes -> pack. For q4_k (scale and
min per 32): d, dmin, sc, m = q4_k_scales(w); value = q4_k_steps(d, sc) * code - q4_k_offsets(dmin, m)
with code in 0..15; q4_k_codes / q4_k_pack as above.
"""
from __future__ import annotations

import numpy as np

from .dtypes import (BF16, F16, F32, IQ4_NL, IQ4_XS, Q3_0, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K,
                     Q6_K, Q8_0, DType)

QK = 32
QK_K = 256
# iq4_nl / iq4_xs: the 16 levels a 4-bit code stands for (GGUF's kvalues_iq4nl).
IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
_GROUP_MAX_EPS = np.float32(1e-15)


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


def _pack_q5_high(q: np.ndarray) -> np.ndarray:
    # Bit 4 of element j into bit j of a little-endian u32.
    return np.packbits((q >> np.uint8(4)).astype(np.uint8), axis=1, bitorder="little")


def quantize_q5_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    idx = np.abs(b).argmax(axis=1)[:, None]
    d = (np.take_along_axis(b, idx, axis=1) / np.float32(-16)).astype(np.float32)
    q = np.trunc(b * _inverse_scale(d) + np.float32(16.5)).astype(np.int32)
    q = np.minimum(q, 31).astype(np.uint8)
    lo = q & np.uint8(0x0F)
    return np.concatenate([d.astype(np.float16).view(np.uint8), _pack_q5_high(q), _pack_nibbles(lo)], axis=1)


def quantize_q5_1(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    lo = b.min(axis=1, keepdims=True)
    hi = b.max(axis=1, keepdims=True)
    d = ((hi - lo) / np.float32(31)).astype(np.float32)
    q = np.trunc((b - lo) * _inverse_scale(d) + np.float32(0.5)).astype(np.int32)
    q = np.clip(q, 0, 31).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8),
                           _pack_q5_high(q), _pack_nibbles(q & np.uint8(0x0F))], axis=1)


# --- super-block (K) quantizers ---------------------------------------------------------------------

def _nearest(v: np.ndarray) -> np.ndarray:
    # ggml's nearest_int: round half to even (the float add of 1.5 * 2^23 rounds so).
    return np.rint(v).astype(np.int32)


def _f16_round(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, np.float32).astype(np.float16).astype(np.float32)


def _seqsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis in float32, left to right: ggml's reference loops add in that order,
    and a pairwise (numpy) sum rounds differently often enough to flip some scale choices."""
    a = np.asarray(a, np.float32)
    out = a[..., 0].copy()
    for i in range(1, a.shape[-1]):
        out += a[..., i]
    return out


def _make_qx_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """ggml make_qx_quants(rmse_type=1): symmetric scale search over 19 candidate steps, weights x^2.
    x [n, g] -> (scale float32 [n], L int32 [n, g] in 0..2*nmax-1)."""
    x = x.astype(np.float32)
    w = x * x
    idx = np.abs(x).argmax(axis=1)[:, None]
    mx = np.take_along_axis(x, idx, axis=1)[:, 0]
    zero = np.abs(mx) < _GROUP_MAX_EPS
    safe = np.where(zero, np.float32(1), mx)

    def trial(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        l = np.clip(_nearest(iscale[:, None] * x), -nmax, nmax - 1)
        lf = l.astype(np.float32)
        return l, _seqsum(w * x * lf), _seqsum(w * lf * lf)

    l, sumlx, suml2 = trial((np.float32(-nmax) / safe).astype(np.float32))
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, 1), 0).astype(np.float32)
    best = scale * sumlx
    L = l
    for i in range(-9, 10):
        if i == 0:
            continue
        li, slx, sl2 = trial((-(np.float32(nmax) + np.float32(0.1) * np.float32(i)) / safe).astype(np.float32))
        better = (sl2 > 0) & (slx * slx > best * sl2)
        L = np.where(better[:, None], li, L)
        scale = np.where(better, slx / np.where(sl2 > 0, sl2, 1), scale).astype(np.float32)
        best = np.where(better, scale * slx, best).astype(np.float32)
    L = np.where(zero[:, None], 0, L + nmax)
    return np.where(zero, 0, scale).astype(np.float32), L


def _make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """ggml make_q3_quants(do_rmse=true): symmetric first guess, then up to 5 passes that move one
    value at a time to the level minimising the x^2-weighted error. x [n, g] -> (scale, L in 0..2nmax-1)."""
    x = x.astype(np.float32)
    n, g = x.shape
    idx = np.abs(x).argmax(axis=1)[:, None]
    mx = np.take_along_axis(x, idx, axis=1)[:, 0]
    zero = np.abs(mx) < _GROUP_MAX_EPS
    iscale = (np.float32(-nmax) / np.where(zero, np.float32(1), mx)).astype(np.float32)
    L = np.clip(_nearest(iscale[:, None] * x), -nmax, nmax - 1)
    w = x * x
    Lf = L.astype(np.float32)
    sumlx = _seqsum(w * x * Lf)
    suml2 = _seqsum(w * Lf * Lf)
    for _ in range(5):
        changed = np.zeros(n, bool)
        for i in range(g):
            xi, wi, li = x[:, i], w[:, i], L[:, i].astype(np.float32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            ok = slx > 0
            new_l = np.clip(_nearest(xi * sl2 / np.where(ok, slx, 1)), -nmax, nmax - 1)
            nl = new_l.astype(np.float32)
            slx2 = slx + wi * xi * nl
            sl22 = sl2 + wi * nl * nl
            take = ok & (new_l != L[:, i]) & (sl22 > 0) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            L[:, i] = np.where(take, new_l, L[:, i])
            sumlx = np.where(take, slx2, sumlx).astype(np.float32)
            suml2 = np.where(take, sl22, suml2).astype(np.float32)
            changed |= take
        if not changed.any():
            break
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, 1), 0).astype(np.float32)
    return np.where(zero, 0, scale).astype(np.float32), np.where(zero[:, None], 0, L + nmax)


def _make_qkx2_quants(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float,
                      nstep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml make_qkx2_quants: asymmetric (scale, min) search, weighted squared error.
    x, w [n, g] -> (scale [n], min [n] (>= 0, subtracted), L int32 [n, g] in 0..nmax)."""
    x = x.astype(np.float32)
    mn = np.minimum(x.min(axis=1), 0).astype(np.float32)
    mx = x.max(axis=1).astype(np.float32)
    flat = mx == mn
    rng_ = np.where(flat, np.float32(1), mx - mn).astype(np.float32)
    sum_w = _seqsum(w)
    sum_x = _seqsum(w * x)
    iscale = (np.float32(nmax) / rng_).astype(np.float32)
    scale = (np.float32(1) / iscale).astype(np.float32)
    L = np.clip(_nearest(iscale[:, None] * (x - mn[:, None])), 0, nmax)
    diff = scale[:, None] * L + mn[:, None] - x
    best = _seqsum(w * (diff * diff))
    for i in range(nstep + 1):
        isc = ((np.float32(rmin) + np.float32(rdelta) * np.float32(i) + np.float32(nmax)) / rng_).astype(np.float32)
        la = np.clip(_nearest(isc[:, None] * (x - mn[:, None])), 0, nmax)
        lf = la.astype(np.float32)
        sum_l = _seqsum(w * lf)
        sum_l2 = _seqsum(w * lf * lf)
        sum_xl = _seqsum(w * lf * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        Ds = np.where(ok, D, 1)
        this_scale = ((sum_w * sum_xl - sum_x * sum_l) / Ds).astype(np.float32)
        this_min = ((sum_l2 * sum_x - sum_l * sum_xl) / Ds).astype(np.float32)
        pos = this_min > 0
        this_scale = np.where(pos, sum_xl / np.where(sum_l2 > 0, sum_l2, 1), this_scale).astype(np.float32)
        this_min = np.where(pos, 0, this_min).astype(np.float32)
        d2 = this_scale[:, None] * lf + this_min[:, None] - x
        err = _seqsum(w * (d2 * d2))
        take = ok & (err < best)
        L = np.where(take[:, None], la, L)
        best = np.where(take, err, best)
        scale = np.where(take, this_scale, scale).astype(np.float32)
        mn = np.where(take, this_min, mn).astype(np.float32)
    scale = np.where(flat, 0, scale).astype(np.float32)
    L = np.where(flat[:, None], 0, L)
    return scale, (-mn).astype(np.float32), L


def _sb(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % QK_K:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of {QK_K}")
    return x.reshape(-1, QK_K)


def _pack_2bit_q3(L: np.ndarray) -> np.ndarray:
    # qs[32h + l] holds elements 128h + l + 32m at bits 2m (m = 0..3).
    n = L.shape[0]
    Lr = L.reshape(n, 2, 4, 32).astype(np.uint8)
    out = Lr[:, :, 0] | (Lr[:, :, 1] << 2) | (Lr[:, :, 2] << 4) | (Lr[:, :, 3] << 6)
    return out.reshape(n, 64)


def q3_k_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, 256] -> (d float32 [n] exactly representable in f16, sc int8 [n, 16] in -32..31)."""
    b = _sb(x)
    n = b.shape[0]
    scales, _ = _make_q3_quants(b.reshape(n * 16, 16), 4)
    scales = scales.reshape(n, 16)
    idx = np.abs(scales).argmax(axis=1)[:, None]
    max_scale = np.take_along_axis(scales, idx, axis=1)[:, 0]
    has = max_scale != 0
    iscale = (np.float32(-32) / np.where(has, max_scale, 1)).astype(np.float32)
    sc = np.clip(_nearest(iscale[:, None] * scales), -32, 31)
    d = np.where(has, _f16_round(np.float32(1) / iscale), 0).astype(np.float32)
    return d, np.where(has[:, None], sc, 0).astype(np.int8)


def q3_k_steps(d: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """Float step of every element: value = step * (code - 4)."""
    step = (np.asarray(d, np.float32)[:, None] * np.asarray(sc, np.int8).astype(np.float32)).astype(np.float32)
    return np.repeat(step, 16, axis=1)


def q3_k_codes(x: np.ndarray, d: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """Round x [n, 256] to nearest on the grid of (d, sc): codes uint8 in 0..7 (value code - 4).
    A zero step gives code 4 (value 0)."""
    b = _sb(x)
    step = q3_k_steps(d, sc)
    ok = step != 0
    l = np.clip(_nearest(b / np.where(ok, step, 1)), -4, 3)
    return (np.where(ok, l, 0) + 4).astype(np.uint8)


def q3_k_pack(codes: np.ndarray, d: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """codes uint8 [n, 256] in 0..7, d [n], sc int8 [n, 16] -> the q3_k bytes [n, 110]."""
    codes = np.asarray(codes, np.uint8).reshape(-1, QK_K)
    n = codes.shape[0]
    hmask = np.packbits((codes >> 2).reshape(n, 8, 32).transpose(0, 2, 1), axis=2, bitorder="little").reshape(n, 32)
    qs = _pack_2bit_q3(codes & np.uint8(3))
    l6 = (np.asarray(sc, np.int16).reshape(n, 16) + 32).astype(np.uint8)
    low = l6 & np.uint8(0xF)
    scales = np.zeros((n, 12), np.uint8)
    scales[:, :8] = low[:, :8] | (low[:, 8:] << 4)
    high = (l6 >> 4).reshape(n, 4, 4)  # [k // 4, k % 4]
    scales[:, 8:] = high[:, 0] | (high[:, 1] << 2) | (high[:, 2] << 4) | (high[:, 3] << 6)
    dh = np.asarray(d, np.float32).astype(np.float16).view(np.uint8).reshape(n, 2)
    return np.concatenate([hmask, qs, scales, dh], axis=1)


def quantize_q3_k(x: np.ndarray) -> np.ndarray:
    b = _sb(x)
    d, sc = q3_k_scales(b)
    # Sub-blocks whose final step is zero keep the first pass's codes (as ggml does).
    _, first = _make_q3_quants(b.reshape(-1, 16), 4)
    codes = q3_k_codes(b, d, sc)
    zero_step = q3_k_steps(d, sc) == 0
    codes = np.where(zero_step, first.reshape(-1, QK_K).astype(np.uint8), codes)
    return q3_k_pack(codes, d, sc)


def q3_0_scales(x: np.ndarray) -> np.ndarray:
    """[n, 32] -> d float32 [n] (f16-exact): the x^2-weighted best symmetric 3-bit scale."""
    b = _blocks(x)
    d, _ = _make_qx_quants(b, 4)
    return _f16_round(d)


def q3_0_steps(d: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(d, np.float32)[:, None], QK, axis=1)


def q3_0_codes(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    step = q3_0_steps(d)
    ok = step != 0
    l = np.clip(_nearest(b / np.where(ok, step, 1)), -4, 3)
    return (np.where(ok, l, 0) + 4).astype(np.uint8)


def q3_0_pack(codes: np.ndarray, d: np.ndarray) -> np.ndarray:
    """codes uint8 [n, 32] in 0..7, d [n] -> the q3_0 bytes [n, 14]."""
    codes = np.asarray(codes, np.uint8).reshape(-1, QK)
    n = codes.shape[0]
    low = (codes & np.uint8(3)).reshape(n, 4, 8)  # element j = 8 * (j // 8) + j % 8
    qs = low[:, 0] | (low[:, 1] << 2) | (low[:, 2] << 4) | (low[:, 3] << 6)
    qh = np.packbits(codes >> np.uint8(2), axis=1, bitorder="little")
    dh = np.asarray(d, np.float32).astype(np.float16).view(np.uint8).reshape(n, 2)
    return np.concatenate([dh, qs, qh], axis=1)


def quantize_q3_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    d = q3_0_scales(b)
    return q3_0_pack(q3_0_codes(b, d), d)


def _pack_scales_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    # 8 six-bit scales and mins into 12 bytes (get_scale_min_k4's layout).
    ls = ls.astype(np.uint8)
    lm = lm.astype(np.uint8)
    out = np.zeros((ls.shape[0], 12), np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _qk_min_scales(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int) -> tuple:
    # q4_k / q5_k: per 32 a (scale, min) search weighted by av_x + |x|, then 6-bit scales and mins
    # against f16 d and dmin. Returns (d, dmin, sc, m, first-pass codes).
    b = _sb(x)
    n = b.shape[0]
    g = b.reshape(n * 8, 32)
    av = np.sqrt(_seqsum(g * g) / np.float32(32)).astype(np.float32)
    w = av[:, None] + np.abs(g)
    scales, mins, first = _make_qkx2_quants(g, w, nmax, rmin, rdelta, nstep)
    scales = scales.reshape(n, 8)
    mins = mins.reshape(n, 8)
    max_scale = np.maximum(scales.max(axis=1), 0)
    max_min = np.maximum(mins.max(axis=1), 0)
    inv_s = np.where(max_scale > 0, np.float32(63) / np.where(max_scale > 0, max_scale, 1), 0).astype(np.float32)
    inv_m = np.where(max_min > 0, np.float32(63) / np.where(max_min > 0, max_min, 1), 0).astype(np.float32)
    sc = np.clip(_nearest(inv_s[:, None] * scales), 0, 63).astype(np.uint8)
    m = np.clip(_nearest(inv_m[:, None] * mins), 0, 63).astype(np.uint8)
    return _f16_round(max_scale / np.float32(63)), _f16_round(max_min / np.float32(63)), sc, m, first.reshape(n, QK_K)


def q4_k_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[n, 256] -> (d, dmin float32 [n] f16-exact, sc, m uint8 [n, 8] in 0..63; sub-block k = elements
    32k..32k+31). Element value = q4_k_steps * code - q4_k_offsets, code in 0..15."""
    d, dmin, sc, m, _ = _qk_min_scales(x, 15, -1.0, 0.1, 20)
    return d, dmin, sc, m


def q4_k_steps(d: np.ndarray, sc: np.ndarray) -> np.ndarray:
    step = (np.asarray(d, np.float32)[:, None] * np.asarray(sc).astype(np.float32)).astype(np.float32)
    return np.repeat(step, 32, axis=1)


def q4_k_offsets(dmin: np.ndarray, m: np.ndarray) -> np.ndarray:
    off = (np.asarray(dmin, np.float32)[:, None] * np.asarray(m).astype(np.float32)).astype(np.float32)
    return np.repeat(off, 32, axis=1)


def _qk_min_codes(b: np.ndarray, step: np.ndarray, off: np.ndarray, nmax: int) -> np.ndarray:
    ok = step != 0
    l = np.clip(_nearest((b + off) / np.where(ok, step, 1)), 0, nmax)
    return np.where(ok, l, 0).astype(np.uint8)


def q4_k_codes(x: np.ndarray, d, dmin, sc, m) -> np.ndarray:
    """Round x [n, 256] to nearest on the (d, dmin, sc, m) grid: codes uint8 in 0..15."""
    return _qk_min_codes(_sb(x), q4_k_steps(d, sc), q4_k_offsets(dmin, m), 15)


def _qk_min_head(d, dmin, sc, m) -> np.ndarray:
    n = np.asarray(d).shape[0]
    return np.concatenate([np.asarray(d, np.float32).astype(np.float16).view(np.uint8).reshape(n, 2),
                           np.asarray(dmin, np.float32).astype(np.float16).view(np.uint8).reshape(n, 2),
                           _pack_scales_k4(np.asarray(sc), np.asarray(m))], axis=1)


def q4_k_pack(codes: np.ndarray, d, dmin, sc, m) -> np.ndarray:
    """codes uint8 [n, 256] in 0..15 and the scales -> the q4_k bytes [n, 144]."""
    codes = np.asarray(codes, np.uint8).reshape(-1, QK_K)
    return np.concatenate([_qk_min_head(d, dmin, sc, m), _pack_nibbles_k(codes)], axis=1)


def _quantize_qk_min(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int) -> tuple:
    # Scales as above, then every value re-rounded on the final grid (first-pass codes where a
    # sub-block's step is zero, as ggml does).
    b = _sb(x)
    d, dmin, sc, m, first = _qk_min_scales(b, nmax, rmin, rdelta, nstep)
    step = q4_k_steps(d, sc)
    L = np.where(step != 0, _qk_min_codes(b, step, q4_k_offsets(dmin, m), nmax), first).astype(np.uint8)
    return _qk_min_head(d, dmin, sc, m), L


def _pack_nibbles_k(L: np.ndarray) -> np.ndarray:
    # qs[32c + l]: low nibble element 64c + l, high nibble element 64c + 32 + l.
    n = L.shape[0]
    Lr = (L & np.uint8(0xF)).reshape(n, 4, 2, 32)
    return (Lr[:, :, 0] | (Lr[:, :, 1] << 4)).reshape(n, 128)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    head, L = _quantize_qk_min(x, 15, -1.0, 0.1, 20)
    return np.concatenate([head, _pack_nibbles_k(L)], axis=1)


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    head, L = _quantize_qk_min(x, 31, -0.5, 0.1, 15)
    n = L.shape[0]
    qh = np.packbits((L >> 4).reshape(n, 8, 32).transpose(0, 2, 1), axis=2, bitorder="little").reshape(n, 32)
    return np.concatenate([head, qh, _pack_nibbles_k(L)], axis=1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    b = _sb(x)
    n = b.shape[0]
    scales, first = _make_qx_quants(b.reshape(n * 16, 16), 32)
    scales = scales.reshape(n, 16)
    idx = np.abs(scales).argmax(axis=1)[:, None]
    max_scale = np.take_along_axis(scales, idx, axis=1)[:, 0]
    empty = np.abs(max_scale) < _GROUP_MAX_EPS
    iscale = (np.float32(-128) / np.where(empty, 1, max_scale)).astype(np.float32)
    d = np.where(empty, 0, _f16_round(np.float32(1) / iscale)).astype(np.float32)
    sc = np.where(empty[:, None], 0, np.minimum(127, _nearest(iscale[:, None] * scales))).astype(np.int8)
    step = np.repeat((d[:, None] * sc.astype(np.float32)).astype(np.float32), 16, axis=1)
    ok = step != 0
    l = np.clip(_nearest(b / np.where(ok, step, 1)), -32, 31) + 32
    L = np.where(ok, l, first.reshape(n, QK_K))
    L = np.where(empty[:, None], 0, L).astype(np.uint8)
    Lr = L.reshape(n, 2, 4, 32)  # [half, quarter, l]
    ql = np.concatenate([(Lr[:, :, 0] & 0xF) | ((Lr[:, :, 2] & 0xF) << 4),
                         (Lr[:, :, 1] & 0xF) | ((Lr[:, :, 3] & 0xF) << 4)], axis=2).reshape(n, 128)
    qh = ((Lr[:, :, 0] >> 4) | ((Lr[:, :, 1] >> 4) << 2) | ((Lr[:, :, 2] >> 4) << 4) |
          ((Lr[:, :, 3] >> 4) << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), d.astype(np.float16).view(np.uint8).reshape(n, 2)], axis=1)


_IQ4_F = IQ4_VALUES.astype(np.float32)
_IQ4_MID = ((_IQ4_F[:-1] + _IQ4_F[1:]) / 2).astype(np.float32)


def _iq4_index(v: np.ndarray) -> np.ndarray:
    # Nearest of the 16 levels; a tie goes to the upper level (ggml's best_index_int8).
    return np.searchsorted(_IQ4_MID, v, side="right").astype(np.uint8)


def _iq4_block_scales(b: np.ndarray, ntry: int = 7) -> np.ndarray:
    """ggml quantize_row_iq4_nl_impl's per-32 search: the x^2-weighted best scale over 2*ntry+2
    candidates. b [n, 32] -> d float32 [n] (0 for all-zero blocks)."""
    w = b * b
    idx = np.abs(b).argmax(axis=1)[:, None]
    mx = np.take_along_axis(b, idx, axis=1)[:, 0]
    zero = np.abs(mx) < _GROUP_MAX_EPS
    safe = np.where(zero, np.float32(1), mx)

    def fit(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = _IQ4_F[_iq4_index(iscale[:, None] * b)]
        return _seqsum(w * q * b), _seqsum(w * q * q)

    d0 = (-safe / _IQ4_F[0]).astype(np.float32)
    sumqx, sumq2 = fit((np.float32(1) / d0).astype(np.float32))
    d = (sumqx / np.where(sumq2 > 0, sumq2, 1)).astype(np.float32)
    best = d * sumqx
    for itry in range(-ntry, ntry + 1):
        sqx, sq2 = fit(((np.float32(itry) + _IQ4_F[0]) / safe).astype(np.float32))
        better = (sq2 > 0) & (sqx * sqx > best * sq2)
        d = np.where(better, sqx / np.where(sq2 > 0, sq2, 1), d).astype(np.float32)
        best = np.where(better, d * sqx, best).astype(np.float32)
    return np.where(zero, 0, d).astype(np.float32)


def _iq4_codes(b: np.ndarray, d: np.ndarray) -> np.ndarray:
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    return _iq4_index(inv[:, None] * b)


def quantize_iq4_nl(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    d = _iq4_block_scales(b)
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2), _pack_nibbles(_iq4_codes(b, d))], axis=1)


def quantize_iq4_xs(x: np.ndarray) -> np.ndarray:
    b = _sb(x)
    n = b.shape[0]
    scales = _iq4_block_scales(b.reshape(n * 8, 32)).reshape(n, 8)
    idx = np.abs(scales).argmax(axis=1)[:, None]
    max_scale = np.take_along_axis(scales, idx, axis=1)[:, 0]
    d = (-max_scale / np.float32(32)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    l = np.clip(_nearest(inv[:, None] * scales), -32, 31)
    dl = (d[:, None] * l.astype(np.float32)).astype(np.float32)
    codes = _iq4_codes(b.reshape(n * 8, 32), dl.reshape(-1)).reshape(n, 8, 32)
    lu = (l + 32).astype(np.uint8)
    scales_l = (lu[:, 0::2] & 0xF) | ((lu[:, 1::2] & 0xF) << 4)
    sh = np.zeros(n, np.uint16)
    for ib in range(8):
        sh |= (lu[:, ib] >> 4).astype(np.uint16) << np.uint16(2 * ib)
    qs = _pack_nibbles(codes.reshape(n * 8, 32)).reshape(n, 128)
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(n, 2), sh.view(np.uint8).reshape(n, 2),
                           scales_l, qs], axis=1)


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
    elif dtype in _ENCODERS:
        out = _ENCODERS[dtype](x)
    else:
        raise ValueError(f"no encoder for {dtype.name}")
    return out.reshape(-1).view(np.uint8)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def _f16_at(blk: np.ndarray, at: int) -> np.ndarray:
    return blk[:, at:at + 2].copy().view(np.float16).astype(np.float32)


def _legacy_nibbles(qs: np.ndarray) -> np.ndarray:
    # [n, 16] -> [n, 32]: element j < 16 low nibble of qs[j], element 16 + j its high nibble.
    return np.concatenate([qs & np.uint8(0xF), qs >> np.uint8(4)], axis=1)


def _bits_le(b: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(b, axis=1, bitorder="little")[:, :count]


def _scales_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # 12 bytes -> 8 six-bit scales and mins.
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _decode_block_types(blk: np.ndarray, dtype: DType) -> np.ndarray:
    """The qformat types' values, each computed as (d * sc) * v, then - dmin * m or + m, in float32
    (the order gguf.quants.dequantize uses, so values agree bit for bit)."""
    n = blk.shape[0]
    if dtype in (Q5_0, Q5_1):
        m_off = 2 if dtype is Q5_1 else 0
        d = _f16_at(blk, 0)
        high = _bits_le(blk[:, 2 + m_off:6 + m_off], 32)
        q = (_legacy_nibbles(blk[:, 6 + m_off:]) | (high << 4)).astype(np.float32)
        if dtype is Q5_0:
            return d * (q - np.float32(16))
        return d * q + _f16_at(blk, 2)
    if dtype is IQ4_NL:
        return _f16_at(blk, 0) * IQ4_VALUES[_legacy_nibbles(blk[:, 2:])].astype(np.float32)
    if dtype is Q3_0:
        low = ((blk[:, 2:10][:, None, :] >> (2 * np.arange(4, dtype=np.uint8))[None, :, None]) & 3).reshape(n, 32)
        q = (low | (_bits_le(blk[:, 10:14], 32) << 2)).astype(np.float32)
        return _f16_at(blk, 0) * (q - np.float32(4))
    if dtype is Q3_K:
        hmask, qs, sb, d = blk[:, 0:32], blk[:, 32:96], blk[:, 96:108], _f16_at(blk, 108)
        k = np.arange(16)
        low4 = np.where(k < 8, sb[:, k % 8] & 0xF, sb[:, k % 8] >> 4)
        high2 = (sb[:, 8 + k % 4] >> (2 * (k // 4)).astype(np.uint8)) & 3
        sc = ((low4 | (high2 << 4)).astype(np.int16) - 32).astype(np.float32)
        # element 128h + 32s + l: bits 0..1 from qs[32h + l] >> 2s, bit 2 from hmask[l] >> (4h + s)
        low = (qs.reshape(n, 2, 1, 32) >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
        high = (hmask.reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
        q = (low.reshape(n, 256) | (high.reshape(n, 256) << 2)).astype(np.float32) - np.float32(4)
        return (np.repeat(d * sc, 16, axis=1) * q)
    if dtype in (Q4_K, Q5_K):
        d, dmin = _f16_at(blk, 0), _f16_at(blk, 2)
        sc, mn = _scales_k4(blk[:, 4:16])
        qs = blk[:, 16:144] if dtype is Q4_K else blk[:, 48:176]
        q = ((qs.reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0xF).reshape(n, 256)
        if dtype is Q5_K:
            high = (blk[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
            q = q | (high.reshape(n, 256) << 4)
        return np.repeat(d * sc, 32, axis=1) * q.astype(np.float32) - np.repeat(dmin * mn, 32, axis=1)
    if dtype is Q6_K:
        ql, qh, sc, d = blk[:, 0:128], blk[:, 128:192], blk[:, 192:208].view(np.int8), _f16_at(blk, 208)
        # element 128h + 32s + l: low 4 bits from ql[64h + 32(s % 2) + l] >> 4(s // 2), high 2 from qh[32h + l] >> 2s
        qlr = ql.reshape(n, 2, 2, 32)  # [h, s % 2, l]
        low = np.stack([qlr[:, :, 0] & 0xF, qlr[:, :, 1] & 0xF, qlr[:, :, 0] >> 4, qlr[:, :, 1] >> 4], axis=2)
        high = (qh.reshape(n, 2, 1, 32) >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
        q = (low | (high << 4)).reshape(n, 256).astype(np.float32) - np.float32(32)
        return np.repeat(d * sc.astype(np.float32), 16, axis=1) * q
    if dtype is IQ4_XS:
        d = _f16_at(blk, 0)
        sh = blk[:, 2:4].copy().view(np.uint16)
        b = np.arange(8)
        low = (blk[:, 4 + b // 2] >> (4 * (b % 2)).astype(np.uint8)) & 0xF
        high = ((sh >> (2 * b).astype(np.uint16)) & 3).astype(np.uint8)
        sc = ((low | (high << 4)).astype(np.int16) - 32).astype(np.float32)
        codes = _legacy_nibbles(blk[:, 8:].reshape(n * 8, 16)).reshape(n, 256)
        return np.repeat(d * sc, 32, axis=1) * IQ4_VALUES[codes].astype(np.float32)
    raise ValueError(f"no decoder for {dtype.name}")


_ENCODERS = {Q5_0: quantize_q5_0, Q5_1: quantize_q5_1, Q3_0: quantize_q3_0, Q3_K: quantize_q3_k,
             Q4_K: quantize_q4_k, Q5_K: quantize_q5_k, Q6_K: quantize_q6_k, IQ4_NL: quantize_iq4_nl,
             IQ4_XS: quantize_iq4_xs}


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
            out = _decode_block_types(blk, dtype)
    return out.reshape(shape)
