"""GPTQ (Frantar et al., 2022): quantize a linear layer's weight column by column, spreading each
column's rounding error over the columns not yet quantized through the inverse Hessian of the
layer's inputs, so that the layer's output on the calibration activations changes least.

    H = 2/n · Xᵀ X (+ damping · mean(diag H) · I)       X: [tokens, in_features]
    U = chol(H⁻¹)ᵀ (upper)
    for column j:  q_j = grid(w_j);  e = (w_j − q_j) / U_jj;  w_{j+1:} −= e · U_{j, j+1:}

Groups follow the format's blocks: a group's parameters are fitted (grids.py) when GPTQ reaches
its first column, on the columns as earlier compensation left them. Columns are taken in their
natural order by default. act_order=True takes them in decreasing order of the Hessian diagonal
(the columns whose inputs carry the most energy first, while the most unquantized columns remain
to absorb their error) with "static groups": every block's parameters are fitted up front on the
original columns, so the blocks stay contiguous in the file and the kernels see the same format.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from edgert.errors import InvalidArgumentError

from .grids import Grid


class Hessian:
    """Accumulates H = 2/n Σ xᵀx over calibration batches of one layer input."""

    def __init__(self, n_in: int):
        self.H = torch.zeros(n_in, n_in, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        self.H += x.T @ x
        self.n += x.shape[0]

    def matrix(self) -> torch.Tensor:
        return 2.0 * self.H / max(self.n, 1)


def gptq_quantize(W: torch.Tensor, H: torch.Tensor, grid: Grid, *, damp: float = 0.01,
                  block: int = 128, compensate: bool = True,
                  act_order: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Quantize W [out, in] on `grid` against Hessian H [in, in]: (dequantized values, bytes).

    compensate=False skips the error feedback (the grid fit still sees H's diagonal): the
    ablation the tests use to show the compensation is what lowers the error."""
    if damp <= 0:
        raise InvalidArgumentError("GPTQ damping must be > 0 (a fraction of the mean Hessian diagonal, e.g. 0.01)")
    rows, cols = W.shape
    g = grid.group
    if cols % g:
        raise InvalidArgumentError(f"{cols} input columns are not a whole number of {g}-column groups")
    block = max(block // g, 1) * g  # whole groups per block (q3_k: one 256-column super-block)
    W = W.double().clone()
    H = H.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    diag = torch.diag(H).clone()
    perm = torch.arange(cols)
    static = None
    if act_order:
        static = [grid.fit(W[:, j:j + g].float(), diag[j:j + g].float()) for j in range(0, cols, g)]
        perm = torch.argsort(diag, descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
    # Damping: more until the Cholesky factorization succeeds (a rank-deficient H from few tokens).
    lam = damp * float(diag.mean())
    for _ in range(8):
        try:
            L = torch.linalg.cholesky(H + lam * torch.eye(cols, dtype=H.dtype))
            Hinv = torch.cholesky_inverse(L)
            U = torch.linalg.cholesky(Hinv, upper=True)
            break
        except RuntimeError:
            lam *= 10.0
    else:
        raise InvalidArgumentError("GPTQ: the calibration Hessian is not positive definite even with "
                                   "strong damping; give more calibration tokens")

    Q = torch.zeros_like(W)
    params: list = []
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if static is not None:
                src = int(perm[col])
                q = grid.quantize(W1[:, i:i + 1].float(), static[src // g], src % g).double()[:, 0]
                Q[:, src] = q
            else:
                if col % g == 0:
                    p = grid.fit(W1[:, i:i + g].float(), diag[col:col + g].float())
                    params.append(p)
                q = grid.quantize(W1[:, i:i + 1].float(), params[-1], col % g).double()[:, 0]
                Q[:, col] = q
            if compensate:
                err = (W1[:, i] - q) / U1[i, i]
                W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
                E1[:, i] = err
        if compensate:
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
    Qf = Q.float()
    return Qf, grid.encode(Qf, static if static is not None else params)


def output_error(W: torch.Tensor, Wq: torch.Tensor, X: torch.Tensor) -> float:
    """Mean squared error of the layer's output on inputs X: ‖X(W − Wq)ᵀ‖² / (tokens · out)."""
    d = X.reshape(-1, X.shape[-1]).float() @ (W - Wq).float().T
    return float(d.pow(2).mean())


def output_error_h(W: torch.Tensor, Wq: torch.Tensor, H: torch.Tensor) -> float:
    """output_error from the Hessian alone: tr(ΔW H ΔWᵀ) / 2 / out."""
    D = (W - Wq).double()
    return float(((D @ H.double()) * D).sum() / 2.0 / W.shape[0])


