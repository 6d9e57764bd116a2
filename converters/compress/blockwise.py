"""Block-wise code training: after GPTQ, retrain each transformer block's integer codes and block
scales (and its two RMSNorm weights) so that the quantized block, fed the quantized model's own
activations, reproduces the float teacher block's output on the calibration sequences (the
"Block-AP" step of EfficientQAT, Chen et al. 2024). Blocks are trained in order, one at a time,
so memory stays at one block's weights and two activation streams, as in the quantize stage.

Parametrisation (per block matrix in a calibrated type, docs/format.md): the value a block decodes
to is  w = step · q (+ m)  with q an integer in the format's range, step the block's f16 scale
(q3_k: d times the 16-column sub-scale, which stays fixed) and m q4_1's offset. Training keeps a
real offset u per weight, in units of its own step, and a relative factor per f16 scale:

    q = clamp(round(q0 + u), qmin, qmax)        (straight-through: d q / d u = 1 inside the range)
    w = step0 · (1 + s) · q  (+ m0 + d0 · t)

u, s, t start at 0, so training starts exactly from GPTQ's file. Loss: the mean squared error of the
block's output against the teacher block's output on the teacher's own input (the target GPTQ's
asym=1 aims at). A block whose loss on the held-out calibration sequences does not improve keeps
its GPTQ bytes. The trained codes and f16 scales are packed back into the same formats, so the
file has the same size and runs on the same kernels.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .. import quantize as codec
from ..dtypes import DType
from ..llama_tensor_names import name as reg
from . import forward
from .grids import _pack4, _pack8
from .model_desc import ModelDesc, _decode_tensor
from .quantize_stage import _block_matrices
from .tune import LAYOUTS, _f16_field

# The integer range of each trainable type's codes (the block layouts are tune.LAYOUTS').
_Q_RANGE: dict[str, tuple[int, int]] = {"q3_0": (-4, 3), "q4_0": (-8, 7), "q8_0": (-127, 127), "q4_1": (0, 15),
                                        "q3_k": (-4, 3)}


def trainable_types() -> tuple[str, ...]:
    return tuple(_Q_RANGE)


def _f16_ste(x: torch.Tensor) -> torch.Tensor:
    """x rounded to the f16 the file stores, with a straight-through gradient."""
    return x + (x.clamp(-65504, 65504).half().float() - x).detach()


def q3_k_subscales(blk: np.ndarray) -> np.ndarray:
    """The 16 signed 6-bit sub-scales of each q3_k block ([n, 110] bytes -> int8 [n, 16]), the
    inverse of quantize.q3_k_pack's scale packing."""
    s = blk[:, 96:108].astype(np.uint8)
    low = np.concatenate([s[:, :8] & 0xF, s[:, :8] >> 4], axis=1)
    k = np.arange(16)
    high = (s[:, 8 + k % 4] >> (2 * (k // 4))) & 3
    return ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8)


@dataclass
class CodeMatrix:
    """One matrix's trainable view: step0 [rows, cols], q0 [rows, cols] (centred integers for the
    symmetric types), d0/m0 [rows, scales] and the per-element sub-scale (q3_k; else None)."""
    dtype: DType
    shape: tuple[int, int]
    per_scale: int
    q0: torch.Tensor
    d0: torch.Tensor
    sub: Optional[torch.Tensor]   # q3_k: float sub-scale per element
    m0: Optional[torch.Tensor]
    qmin: int
    qmax: int
    sc: Optional[np.ndarray] = None  # q3_k's int8 sub-scales, for packing

    @classmethod
    def of(cls, dtype: DType, raw: np.ndarray, shape: tuple[int, int]) -> "CodeMatrix":
        per, nbytes, d_at, m_at = LAYOUTS[dtype.name]
        qmin, qmax = _Q_RANGE[dtype.name]
        rows, cols = shape
        blk = np.asarray(raw, np.uint8).reshape(-1, nbytes)
        d = torch.from_numpy(_f16_field(blk, d_at)).reshape(rows, cols // per)
        m = None if m_at is None else torch.from_numpy(_f16_field(blk, m_at)).reshape(rows, cols // per)
        values = _decode_tensor(raw, dtype, shape)
        sub, sc = None, None
        if dtype.name == "q3_k":
            sc = q3_k_subscales(blk)
            sub = torch.from_numpy(sc.astype(np.float32)).reshape(rows, -1).repeat_interleave(16, 1)
        step = d.repeat_interleave(per, 1) * (sub if sub is not None else 1.0)
        centred = values if m is None else values - m.repeat_interleave(per, 1)
        ok = step != 0
        q0 = torch.where(ok, torch.round(centred / torch.where(ok, step, torch.ones_like(step))),
                         torch.zeros_like(step)).clamp(qmin, qmax)
        return cls(dtype, (rows, cols), per, q0, d, sub, m, qmin, qmax, sc)

    def params(self) -> dict[str, torch.Tensor]:
        p = {"u": torch.zeros_like(self.q0), "s": torch.zeros_like(self.d0)}
        if self.m0 is not None:
            p["t"] = torch.zeros_like(self.d0)
        return p

    def _codes(self, u: torch.Tensor, ste: bool) -> torch.Tensor:
        x = self.q0 + u
        r = torch.round(x)
        q = x + (r - x).detach() if ste else r
        return q.clamp(self.qmin, self.qmax)

    # The scale and offset as the file will store them (f16), so the trained values are the decoded ones.
    def _d(self, P: dict[str, torch.Tensor]) -> torch.Tensor:
        return _f16_ste(self.d0 * (1 + P["s"]))

    def _m(self, P: dict[str, torch.Tensor]) -> torch.Tensor:
        return _f16_ste(self.m0 + self.d0 * P["t"])

    def value(self, P: dict[str, torch.Tensor], ste: bool = True) -> torch.Tensor:
        per = self.per_scale
        step = self._d(P).repeat_interleave(per, 1)
        if self.sub is not None:
            step = step * self.sub
        w = step * self._codes(P["u"], ste)
        if self.m0 is not None:
            w = w + self._m(P).repeat_interleave(per, 1)
        return w

    def encode(self, P: dict[str, torch.Tensor]) -> np.ndarray:
        """The format's bytes for the trained codes and f16-rounded scales."""
        q = self._codes(P["u"], False).to(torch.int16)
        d = self._d(P)
        name = self.dtype.name
        if name == "q3_0":
            return codec.q3_0_pack((q + 4).to(torch.uint8).numpy().reshape(-1, 32), d.numpy().reshape(-1)).reshape(-1)
        if name == "q3_k":
            return codec.q3_k_pack((q + 4).to(torch.uint8).numpy().reshape(-1, 256), d.numpy().reshape(-1),
                                   self.sc).reshape(-1)
        if name == "q4_0":
            return _pack4(d, None, q + 8)
        if name == "q4_1":
            return _pack4(d, self._m(P), q)
        if name == "q8_0":
            return _pack8(d, q)
        raise AssertionError(name)


@dataclass
class BlockSpec:
    epochs: int = 2
    lr: float = 2e-2        # for u (in steps); scales and norms use lr / 10
    batch: int = 4
    seed: int = 0


def _run(W: dict, hp: dict, layer: int, x: torch.Tensor, freqs: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    out = torch.empty_like(x)
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = forward.block(W, hp, layer, x[i:i + chunk], 0, freqs)
    return out


def _mse(W, hp, layer, x, y, freqs) -> float:
    with torch.no_grad():
        return float((_run(W, hp, layer, x, freqs) - y).pow(2).mean())


def train_blocks(student: ModelDesc, teacher: ModelDesc, ids: torch.Tensor, spec: BlockSpec, *,
                 heldout: Optional[torch.Tensor] = None, progress: bool = False) -> dict:
    """Train student's quantized block matrices in place (student.encoded rewritten). ids: the
    calibration sequences [n, T]; heldout (optional): sequences that decide whether a block keeps
    its trained codes. Returns per-block losses."""
    hp = student.hparams
    freqs = forward.inv_freq(teacher.weights, teacher.hparams)
    held = heldout if heldout is not None and heldout.numel() else ids[:max(1, ids.shape[0] // 16)]
    with torch.no_grad():
        xs, xt = forward.embed(student.weights, ids).clone(), forward.embed(teacher.weights, ids).clone()
        hs, ht = forward.embed(student.weights, held).clone(), forward.embed(teacher.weights, held).clone()
    gen = torch.Generator().manual_seed(spec.seed)
    stats = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=student.n_layers, unit="block", desc="training codes", file=sys.stderr)
    t_start = time.monotonic()
    for l in range(student.n_layers):
        names = _block_matrices(l)
        norms = [reg("ATTN_NORM", l), reg("FFN_NORM", l)]
        teacher.load(names)
        Wt = {k: teacher.weights[k] for k in teacher.weights if k.startswith(f"blk.{l}.")}
        with torch.no_grad():
            yt, yht = _run(Wt, hp, l, xt, freqs), _run(Wt, hp, l, ht, freqs)
        teacher.release(names)
        mats = {n: CodeMatrix.of(*student.encoded[n], student.shape(n)) for n in names
                if n in student.encoded and student.encoded[n][0].name in _Q_RANGE}
        fixed = {k: student.weights[k] for k in student.weights if k.startswith(f"blk.{l}.") and k not in mats}
        P = {n: {k: v.requires_grad_(True) for k, v in m.params().items()} for n, m in mats.items()}
        N = {n: student.weights[n].detach().clone().requires_grad_(True) for n in norms}

        def weights(ste: bool = True):
            W = dict(fixed)
            for n, m in mats.items():
                W[n] = m.value(P[n], ste)
            W.update(N)
            return W

        with torch.no_grad():
            before = _mse(weights(False), hp, l, hs, yht, freqs)
        groups = [{"params": [p["u"] for p in P.values()], "lr": spec.lr},
                  {"params": [v for p in P.values() for k, v in p.items() if k != "u"] + list(N.values()),
                   "lr": spec.lr / 10}]
        opt = torch.optim.Adam(groups, betas=(0.9, 0.95))
        steps_per_epoch = max(1, ids.shape[0] // spec.batch)
        total = spec.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * i / total)))
        last = float("nan")
        for e in range(spec.epochs):
            order = torch.randperm(ids.shape[0], generator=gen)
            for i in range(steps_per_epoch):
                b = order[i * spec.batch:(i + 1) * spec.batch]
                loss = (forward.block(weights(), hp, l, xs[b], 0, freqs) - yt[b]).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                last = loss.item()
        with torch.no_grad():
            after = _mse(weights(False), hp, l, hs, yht, freqs)
            kept = after < before
            if kept:
                for n, m in mats.items():
                    student.encoded[n] = (m.dtype, m.encode(P[n]))
                    student.settle(n)
                for n in norms:
                    student.weights[n] = N[n].detach().clone()
            Ws = {k: student.weights[k] for k in student.weights if k.startswith(f"blk.{l}.")}
            xs, hs = _run(Ws, hp, l, xs, freqs), _run(Ws, hp, l, hs, freqs)
            xt, ht = yt, yht
        stats.append({"layer": l, "heldout_mse_before": before, "heldout_mse_after": after, "kept": bool(kept),
                      "last_loss": last})
        if bar is not None:
            bar.set_postfix(mse=f"{before:.3g}->{after:.3g}")
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"blocks": stats, "seconds": round(time.monotonic() - t_start, 1), "epochs": spec.epochs,
            "lr": spec.lr, "batch": spec.batch}
