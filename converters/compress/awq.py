"""AWQ-style activation-aware scaling (Lin et al., 2023): before quantizing the linears that share
one input, scale their input channels by s = mean|x|^α (α searched per layer on calibration
activations) so the channels that carry large activations lose less to rounding, and fold 1/s
into what produces that input — the RMSNorm weight (Q/K/V, gate/up) or the up projection's rows
(down) — so the graph and the kernels are unchanged.

The O projection is left unscaled: its input comes from V through attention, and under GQA one V
row serves several heads' O columns (AutoAWQ folds V→O only when the shapes match, too).
"""
from __future__ import annotations

import torch

from .grids import Grid, quantize_matrix

ALPHAS = tuple(i / 20 for i in range(20))


def search_scales(Ws: list[torch.Tensor], X: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, float, float]:
    """Per-input-channel scales for the matrices Ws (same input X [n, in]): (s, α, relative error).
    α = 0 (s = 1) is among the candidates, so the result is never worse than no scaling on X."""
    W = torch.cat(Ws, 0)
    X = X.float()
    Y = X @ W.T
    x_mean = X.abs().mean(0).clamp_min(1e-6)
    best = (torch.ones(W.shape[1]), 0.0, float("inf"))
    for a in ALPHAS:
        s = x_mean.pow(a)
        s = s / (s.max() * s.min()).sqrt()
        Wq, _ = quantize_matrix(W * s, grid)
        err = float(((X @ (Wq / s).T) - Y).pow(2).mean())
        if err < best[2]:
            best = (s, a, err)
    s, a, err = best
    return s, a, err / max(float(Y.pow(2).mean()), 1e-30)
