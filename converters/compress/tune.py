"""Scale tuning: heal a quantized model by knowledge distillation that trains only what the file
stores as floats — every block's f16 scale (and q4_1/q5_1's f16 offset) in the block matrices
and the token embedding / output matrix, and the RMSNorm weights — with
the integer codes GPTQ chose held fixed (the end-to-end step of EfficientQAT, Chen et al. 2024,
"E2E-QP"; the codes stay on the format's grid, so the tuned file is the same size and runs on the
same kernels).

The matrix a block-quantized tensor decodes to is W = D ⊙ C (+ M) with C its integer codes and
D, M one value per block. Training a multiplicative factor per block, D = D0·(1 + s) (and
M = M0 + D0·t for q4_1), keeps every step relative to the block's own size; the loss is
distill.py's KL to the teacher's next-token distributions on the calibration sequences (T = 1 by
default: the report's KLD), with its progress bar, time budget, checkpoint and Ctrl-C resume.

The tuned scales are rounded to f16 and written into the blocks' bytes in place of the old ones;
nothing else in the bytes changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from edgert.errors import InvalidArgumentError

from ..dtypes import DType
from .distill import DistillSpec
from .model_desc import ModelDesc, _decode_tensor
# The token embedding and output matrix are tuned too: the output matrix is read every token, so
# a cheaper type there (--embed-type q5_1 instead of q8_0) is where a 3-bit file saves its last bytes.
from .quantize_stage import EMBED_NAMES

# type -> (elements per block, bytes per block, byte offset of the f16 scale, of the f16 offset)
LAYOUTS: dict[str, tuple[int, int, int, Optional[int]]] = {
    "q3_0": (32, 14, 0, None), "q4_0": (32, 18, 0, None), "q5_0": (32, 22, 0, None), "q8_0": (32, 34, 0, None),
    "q4_1": (32, 20, 0, 2), "q5_1": (32, 24, 0, 2), "q3_k": (256, 110, 108, None)}


@dataclass
class TuneSpec(DistillSpec):
    """--tune blocks=E,block_lr=2e-2,steps=N,time=20m,lr=1e-3,batch=4: first E epochs of block-wise
    code training (blockwise.py; 0: none), then distillation's settings for the scales (lr is
    relative to each block's scale, T defaults to 1)."""
    lr: float = 1e-3
    temperature: float = 1.0
    blocks: int = 0
    block_lr: float = 2e-2

    @property
    def active(self) -> bool:
        return self.blocks > 0 or self.scales_active

    @property
    def scales_active(self) -> bool:
        return bool(self.steps) or bool(self.time_budget)

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.blocks <= 50:
            raise InvalidArgumentError(f"--tune blocks={self.blocks}: epochs of block-wise code training, 0..50")
        if not 0 < self.block_lr < 1:
            raise InvalidArgumentError(f"--tune block_lr={self.block_lr}: in (0, 1) (a fraction of a step)")


@dataclass
class _Blocks:
    dtype: DType
    raw: np.ndarray       # the tensor's bytes (a private copy: the scales are rewritten in it)
    shape: tuple[int, int]
    group: int
    block_bytes: int
    d_at: int
    m_at: Optional[int]
    codes: torch.Tensor   # [rows, blocks, group] int8/int16 (value = d·code + m)
    d0: torch.Tensor      # [rows, blocks] f32
    m0: Optional[torch.Tensor]


def _f16_field(blk: np.ndarray, at: int) -> np.ndarray:
    return blk[:, at:at + 2].copy().view(np.float16).astype(np.float32).reshape(-1)


def _blocks_of(dtype: DType, raw: np.ndarray, shape: tuple[int, int]) -> _Blocks:
    group, nbytes, d_at, m_at = LAYOUTS[dtype.name]
    raw = np.array(raw, dtype=np.uint8, copy=True).reshape(-1)
    rows, cols = shape
    blk = raw.reshape(-1, nbytes)
    d = _f16_field(blk, d_at)
    m = _f16_field(blk, m_at) if m_at is not None else None
    values = _decode_tensor(raw, dtype, shape).reshape(-1, group)
    dd = torch.from_numpy(d)[:, None]
    centred = values if m is None else values - torch.from_numpy(m)[:, None]
    codes = torch.where(dd != 0, torch.round(centred / torch.where(dd != 0, dd, torch.ones_like(dd))),
                        torch.zeros_like(centred))
    # q3_k's code is sc·(q − 4) with a 6-bit sc: up to 128 in magnitude; q5_x's fit int8.
    codes = codes.to(torch.int16 if dtype.name == "q3_k" else torch.int8).reshape(rows, cols // group, group)
    return _Blocks(dtype, raw, shape, group, nbytes, d_at, m_at, codes, torch.from_numpy(d).reshape(rows, -1),
                   None if m is None else torch.from_numpy(m).reshape(rows, -1))


class ScaleParams:
    """The trainable parametrisation distill.distill() takes: `params` (name -> initial tensor),
    `weights(P)` the model's weights under parameters P, `finish(P)` to write them into desc."""

    def __init__(self, desc: ModelDesc, names: Optional[list[str]] = None):
        self.desc = desc
        self.blocks: dict[str, _Blocks] = {}
        for n in names if names is not None else [*desc.block_matrix_names(), *EMBED_NAMES]:
            if n in desc.encoded and desc.encoded[n][0].name in LAYOUTS:
                dt, raw = desc.encoded[n]
                self.blocks[n] = _blocks_of(dt, raw, desc.shape(n))
        self.norms = [n for n in desc.weights if n.endswith("norm.weight")]
        self.fixed = {n: desc.weights[n] for n in desc.weights if n not in self.blocks and n not in self.norms}
        self.params: dict[str, torch.Tensor] = {}
        for n, b in self.blocks.items():
            self.params[n + ":s"] = torch.zeros_like(b.d0)
            if b.m0 is not None:
                self.params[n + ":m"] = torch.zeros_like(b.d0)
        for n in self.norms:
            self.params[n] = desc.weights[n].detach().clone()

    def __len__(self) -> int:
        return len(self.blocks)

    def _value(self, n: str, P: dict[str, torch.Tensor]) -> torch.Tensor:
        b = self.blocks[n]
        w = b.codes.float() * (b.d0 * (1 + P[n + ":s"]))[:, :, None]
        if b.m0 is not None:
            w = w + (b.m0 + b.d0 * P[n + ":m"])[:, :, None]
        return w.reshape(b.shape)

    def weights(self, P: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        W = dict(self.fixed)
        for n in self.blocks:
            W[n] = self._value(n, P)
        for n in self.norms:
            W[n] = P[n]
        return W

    def finish(self, P: dict[str, torch.Tensor]) -> None:
        """Round the tuned scales to f16, write them into each tensor's bytes, and make desc read
        those bytes (and the tuned norms)."""
        with torch.no_grad():
            for n, b in self.blocks.items():
                blk = b.raw.reshape(-1, b.block_bytes)
                d = (b.d0 * (1 + P[n + ":s"])).reshape(-1).clamp(-65504, 65504).numpy().astype(np.float16)
                blk[:, b.d_at:b.d_at + 2] = d.view(np.uint8).reshape(-1, 2)
                if b.m0 is not None:
                    m = (b.m0 + b.d0 * P[n + ":m"]).reshape(-1).clamp(-65504, 65504).numpy().astype(np.float16)
                    blk[:, b.m_at:b.m_at + 2] = m.view(np.uint8).reshape(-1, 2)
                self.desc.encoded[n] = (b.dtype, b.raw)
                self.desc.settle(n)
            for n in self.norms:
                self.desc.weights[n] = P[n].detach().clone()
