"""Quantization grids of the runtime's block formats, as GPTQ and AWQ need them: fit a group of
columns' parameters (scale, offset), put any column of the group on that grid, and encode the
finished matrix into the format's bytes (docs/format.md).

Groups are the formats' own blocks along the input dimension (32 columns for q4_0, q4_1, q8_0 and
edgert's 3-bit q3_0; a 256-column super-block for q3_k, whose 16 sub-block scales are fitted with
its d when GPTQ reaches the super-block; the 3-bit scale fits and packers are converters/quantize.py's), so
calibrated files run on the existing kernels unchanged. A grid returns values exactly as the
runtime decodes them (f16-rounded scales, the same formula), so GPTQ compensates the error the
runtime will actually see.

`fit` takes optional per-column importance (the Hessian diagonal, or mean squared activations) and
searches a few clipped ranges per row, keeping the one with the least weighted error: with
importance None and search off it is exactly ggml's round-to-nearest range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch

from .. import quantize as codec
from ..dtypes import Q3_0, Q3_K, Q4_0, Q4_1, Q8_0, DType


class Grid(Protocol):
    dtype: DType
    group: int  # columns fitted together (a multiple of 32)

    def fit(self, w: torch.Tensor, importance: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]: ...
    # w: columns [j0, j0 + k) of a group (the q3_k grid's step depends on the column).
    def quantize(self, w: torch.Tensor, params: tuple[torch.Tensor, ...], j0: int = 0) -> torch.Tensor: ...
    def encode(self, wq: torch.Tensor, params: list[tuple[torch.Tensor, ...]]) -> np.ndarray: ...


# Grids whose values are one f16 scale per group times an integer (`scaled = True`: q4_0, q8_0,
# q3_0, and q3_k's super-block d over its fixed 6-bit sub-scales) also offer, for GPTQ's scale
# refit (gptq.refit_scales):
#   scale_codes(wq, params) -> (C [rows, cols] integers as floats, D [rows, groups]) with
#       wq == D (repeated over the group) * C;
#   with_scales(params, D) -> params with the scales replaced by D (f16-exact);
#   dequantize(C, params) -> the values the runtime decodes from those codes under params.


def _expand(d: torch.Tensor, g: int) -> torch.Tensor:
    return d.repeat_interleave(g, 1)


def _f16(x: torch.Tensor) -> torch.Tensor:
    """Round to the f16 the file stores, back in f32 (saturating, as a scale never needs more)."""
    return x.clamp(-65504.0, 65504.0).half().float()


def _best(w: torch.Tensor, cands: list[tuple[torch.Tensor, ...]], quant, importance: Optional[torch.Tensor]):
    """Per row, the candidate parameters with the least (importance-weighted) squared error."""
    imp = torch.ones(w.shape[1]) if importance is None else importance.clamp_min(0)
    errs = torch.stack([((quant(w, p) - w) ** 2 * imp).sum(1) for p in cands])  # [n_cands, rows]
    pick = errs.argmin(0)
    return tuple(torch.stack([c[i] for c in cands])[pick, torch.arange(w.shape[0])] for i in range(len(cands[0])))


@dataclass
class Q40Grid:
    """q4_0: x = d·(nibble − 8), one f16 d per 32 columns."""
    search: bool = True
    dtype: DType = Q4_0
    group: int = 32
    shrink: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)
    lsq: bool = False  # also try each candidate's least-squares scale (_lsq)

    def _params(self, w: torch.Tensor, s: float) -> tuple[torch.Tensor]:
        idx = w.abs().argmax(1, keepdim=True)
        return (_f16(torch.gather(w, 1, idx)[:, 0] / -8.0 * s),)

    def fit(self, w, importance=None):
        if not self.search:
            return self._params(w, 1.0)
        cands = [self._params(w, s) for s in self.shrink]
        if self.lsq:
            cands += [self._lsq(w, c, importance) for c in cands]
        return _best(w, cands, self.quantize, importance)

    def _lsq(self, w, params, importance):
        """The importance-weighted least-squares scale for the codes `params` gives (llama.cpp's
        make_qx_quants step), f16-rounded; rows whose codes are all zero keep their scale."""
        imp = torch.ones(w.shape[1]) if importance is None else importance.clamp_min(0)
        c = self.codes(w, params) - 8
        den = (imp * c * c).sum(1)
        d = torch.where(den > 0, (imp * c * w).sum(1) / den.clamp_min(1e-30), params[0])
        return (_f16(d),)

    def codes(self, w, params):
        d = params[0][:, None]
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))
        return (torch.round(w * inv) + 8).clamp(0, 15)

    def quantize(self, w, params, j0=0):
        return params[0][:, None] * (self.codes(w, params) - 8)

    scaled = True

    def scale_codes(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)
        return torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) - 8 for i, p in enumerate(params)], 1), d

    def with_scales(self, params, d):
        return [(d[:, i],) for i in range(len(params))]

    def dequantize(self, c, params):
        return _expand(torch.stack([p[0] for p in params], 1), 32) * c

    def encode(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)  # [rows, blocks]
        q = torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) for i, p in enumerate(params)], 1)
        return _pack4(d, None, q)


@dataclass
class Q41Grid:
    """q4_1: x = d·nibble + m, f16 d and m per 32 columns."""
    search: bool = True
    dtype: DType = Q4_1
    group: int = 32
    trims: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15)

    def _params(self, w, lo_trim: float, hi_trim: float):
        lo, hi = w.min(1).values, w.max(1).values
        span = hi - lo
        lo, hi = lo + lo_trim * span, hi - hi_trim * span
        return _f16((hi - lo) / 15.0), _f16(lo)

    def fit(self, w, importance=None):
        if not self.search:
            return self._params(w, 0.0, 0.0)
        cands = [self._params(w, a, b) for a in self.trims for b in self.trims]
        return _best(w, cands, self.quantize, importance)

    def codes(self, w, params):
        d, m = params[0][:, None], params[1][:, None]
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))
        return torch.round((w - m) * inv).clamp(0, 15)

    def quantize(self, w, params, j0=0):
        return params[0][:, None] * self.codes(w, params) + params[1][:, None]

    def encode(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)
        m = torch.stack([p[1] for p in params], 1)
        q = torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) for i, p in enumerate(params)], 1)
        return _pack4(d, m, q)


@dataclass
class Q80Grid:
    """q8_0: x = d·q, q in [−127, 127], one f16 d per 32 columns."""
    search: bool = True
    dtype: DType = Q8_0
    group: int = 32
    shrink: tuple[float, ...] = (1.0, 0.97, 0.94, 0.9)

    def _params(self, w, s):
        return (_f16(w.abs().max(1).values / 127.0 * s),)

    def fit(self, w, importance=None):
        if not self.search:
            return self._params(w, 1.0)
        return _best(w, [self._params(w, s) for s in self.shrink], self.quantize, importance)

    def codes(self, w, params):
        d = params[0][:, None]
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))
        return torch.round(w * inv).clamp(-127, 127)

    def quantize(self, w, params, j0=0):
        return params[0][:, None] * self.codes(w, params)

    scaled = True

    def scale_codes(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)
        return torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) for i, p in enumerate(params)], 1), d

    def with_scales(self, params, d):
        return [(d[:, i],) for i in range(len(params))]

    def dequantize(self, c, params):
        return _expand(torch.stack([p[0] for p in params], 1), 32) * c

    def encode(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)
        q = torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) for i, p in enumerate(params)], 1)
        return _pack8(d, q)


def _pack8(d: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    """Blocks of q8_0: f16 d [rows, blocks], then the 32 codes q [rows, cols] as int8."""
    rows, nb = d.shape
    out = np.empty((rows, nb, 34), np.uint8)
    out[:, :, 0:2] = d.half().numpy().view(np.uint8).reshape(rows, nb, 2)
    out[:, :, 2:] = q.to(torch.int8).numpy().reshape(rows, nb, 32).view(np.uint8)
    return out.reshape(-1)


def _pack4(d: torch.Tensor, m: Optional[torch.Tensor], q: torch.Tensor) -> np.ndarray:
    """Blocks of q4_0 (m None) or q4_1: element j in the low nibble of byte j, j+16 in its high."""
    rows, nb = d.shape
    qn = q.to(torch.uint8).numpy().reshape(rows, nb, 32)
    qs = qn[:, :, :16] | (qn[:, :, 16:] << 4)
    head = 2 if m is None else 4
    out = np.empty((rows, nb, head + 16), np.uint8)
    out[:, :, 0:2] = d.half().numpy().view(np.uint8).reshape(rows, nb, 2)
    if m is not None:
        out[:, :, 2:4] = m.half().numpy().view(np.uint8).reshape(rows, nb, 2)
    out[:, :, head:] = qs
    return out.reshape(-1)


@dataclass
class Q30Grid:
    """q3_0 (edgert's 3-bit, 32-blocks): x = d·(code − 4), code 0..7, one f16 d per 32 columns.
    The fit starts from quantize.q3_0_scales (x²-weighted best scale) and, with search, also tries
    a few scalings of it against the importance-weighted error."""
    search: bool = True
    dtype: DType = Q3_0
    group: int = 32
    scales: tuple[float, ...] = (1.0, 0.9, 0.95, 1.05, 1.1)

    def fit(self, w, importance=None):
        d = torch.from_numpy(codec.q3_0_scales(w.float().numpy()).astype(np.float32))
        if not self.search:
            return (d,)
        return _best(w, [(_f16(d * s),) for s in self.scales], self.quantize, importance)

    def codes(self, w, params):
        d = params[0][:, None]
        ok = d != 0
        return torch.where(ok, torch.round(w / torch.where(ok, d, torch.ones_like(d))).clamp(-4, 3), torch.zeros_like(w)) + 4

    def quantize(self, w, params, j0=0):
        return params[0][:, None] * (self.codes(w, params) - 4)

    scaled = True

    def scale_codes(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)
        return torch.cat([self.codes(wq[:, i * 32:(i + 1) * 32], p) - 4 for i, p in enumerate(params)], 1), d

    def with_scales(self, params, d):
        return [(d[:, i],) for i in range(len(params))]

    def dequantize(self, c, params):
        return _expand(torch.stack([p[0] for p in params], 1), 32) * c

    def encode(self, wq, params):
        d = torch.stack([p[0] for p in params], 1)  # [rows, blocks]
        q = torch.stack([self.codes(wq[:, i * 32:(i + 1) * 32], p) for i, p in enumerate(params)], 1)
        return codec.q3_0_pack(q.to(torch.uint8).numpy().reshape(-1, 32), d.numpy().reshape(-1)).reshape(-1)


@dataclass
class Q3KGrid:
    """q3_k: 256-column super-blocks, x = (d·sc_k)·(code − 4) with a 6-bit sc_k per 16 columns.
    Fitted per super-block with quantize.q3_k_scales (ggml's search); GPTQ then rounds each
    column on that fixed grid."""
    search: bool = True
    dtype: DType = Q3_K
    group: int = 256

    def fit(self, w, importance=None):
        d, sc = codec.q3_k_scales(w.float().numpy())
        return torch.from_numpy(d.astype(np.float32)), torch.from_numpy(sc.astype(np.float32))

    def steps(self, params, j0: int, k: int) -> torch.Tensor:
        d, sc = params
        # (d·sc) in float32, as the decoder computes it
        return (d[:, None] * sc).repeat_interleave(16, 1)[:, j0:j0 + k]

    def codes(self, w, params, j0=0):
        step = self.steps(params, j0, w.shape[1])
        ok = step != 0
        return torch.where(ok, torch.round(w / torch.where(ok, step, torch.ones_like(step))).clamp(-4, 3),
                           torch.zeros_like(w)) + 4

    def quantize(self, w, params, j0=0):
        return self.steps(params, j0, w.shape[1]) * (self.codes(w, params, j0) - 4)

    scaled = True

    def scale_codes(self, wq, params):
        # value = d · (sc_k · (code − 4)): the integer is sc_k · (code − 4), the scale d.
        c = torch.cat([p[1].repeat_interleave(16, 1) * (self.codes(wq[:, i * 256:(i + 1) * 256], p) - 4)
                       for i, p in enumerate(params)], 1)
        return c, torch.stack([p[0] for p in params], 1)

    def with_scales(self, params, d):
        return [(d[:, i], p[1]) for i, p in enumerate(params)]

    def dequantize(self, c, params):
        out = []
        for i, p in enumerate(params):
            sc = p[1].repeat_interleave(16, 1)
            code = torch.where(sc != 0, c[:, i * 256:(i + 1) * 256] / torch.where(sc != 0, sc, torch.ones_like(sc)),
                               torch.zeros_like(sc))
            out.append(self.steps(p, 0, 256) * code)  # (d·sc) · code, as the decoder computes it
        return torch.cat(out, 1)

    def encode(self, wq, params):
        rows = wq.shape[0]
        nb = len(params)
        codes = torch.stack([self.codes(wq[:, i * 256:(i + 1) * 256], p) for i, p in enumerate(params)], 1)
        d = torch.stack([p[0] for p in params], 1).numpy().reshape(-1)
        sc = torch.stack([p[1] for p in params], 1).numpy().reshape(rows * nb, 16).astype(np.int8)
        return codec.q3_k_pack(codes.to(torch.uint8).numpy().reshape(-1, 256), d, sc).reshape(-1)


GRIDS = {"q3_0": Q30Grid, "q3_k": Q3KGrid, "q4_0": Q40Grid, "q4_1": Q41Grid, "q8_0": Q80Grid}


def grid_for(type_name: str, search: bool = True) -> Grid:
    return GRIDS[type_name](search=search)


def quantize_matrix(w: torch.Tensor, grid: Grid, importance: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, np.ndarray]:
    """Round every group to its fitted grid (no error compensation): (values, bytes)."""
    g = grid.group
    params = [grid.fit(w[:, i:i + g], None if importance is None else importance[i:i + g])
              for i in range(0, w.shape[1], g)]
    wq = torch.cat([grid.quantize(w[:, i:i + g], p) for i, p in zip(range(0, w.shape[1], g), params)], 1)
    return wq, grid.encode(wq, params)
