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

GPTQ fixes a group's scale before it picks the group's codes. refit=N then alternates: the
Hessian-weighted least-squares scales for the chosen codes (refit_scales, the whole matrix's H,
not only its diagonal), and a GPTQ pass with those scales fixed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from edgert.errors import InvalidArgumentError

from .grids import Grid


class Hessian:
    """Accumulates H = 2/n Σ xᵀx over calibration batches of one layer input and, when the float
    model's input x_f to the same layer is given too, the cross term D = 2/n Σ (x_f − x)ᵀx that
    asymmetric_target needs."""

    def __init__(self, n_in: int):
        self.H = torch.zeros(n_in, n_in, dtype=torch.float64)
        self.D: Optional[torch.Tensor] = None
        self.n = 0

    def add(self, x: torch.Tensor, x_float: Optional[torch.Tensor] = None) -> None:
        # Each batch's product in float32 (twice as fast as float64, and a batch is a few
        # thousand tokens), summed over batches in float64.
        x = x.reshape(-1, x.shape[-1]).float()
        self.H += (x.T @ x).double()
        if x_float is not None:
            if self.D is None:
                self.D = torch.zeros_like(self.H)
            self.D += ((x_float.reshape(-1, x.shape[-1]).float() - x).T @ x).double()
        self.n += x.shape[0]

    def matrix(self) -> torch.Tensor:
        return 2.0 * self.H / max(self.n, 1)

    def cross(self) -> Optional[torch.Tensor]:
        return None if self.D is None else 2.0 * self.D / max(self.n, 1)


def asymmetric_target(W: torch.Tensor, H: torch.Tensor, D: torch.Tensor, damp: float) -> torch.Tensor:
    """The weights GPTQ should aim at so that the quantized model's layer output on its own
    (already perturbed) inputs X matches the float model's output on the float inputs X_f
    (asymmetric calibration, GPTAQ / GPTQv2, Li et al. 2025):

        min_Q ‖X_f Wᵀ − X Qᵀ‖²  =  min_Q ‖X W*ᵀ − X Qᵀ‖² + const,   W* = W (I + D (H + λI)⁻¹)

    with H = XᵀX and D = (X_f − X)ᵀX (both 2/n-scaled), λ the same damping as GPTQ's: the part of
    the float output that X can reproduce. GPTQ on W* with H then minimizes the first norm."""
    H = H.double()
    lam = damp * float(torch.diag(H).mean())
    A = H + lam * torch.eye(H.shape[0], dtype=H.dtype)
    WD = W.double() @ D.double()
    # W D (H + λI)⁻¹ = ((H + λI)⁻¹ (W D)ᵀ)ᵀ, H symmetric
    return (W.double() + torch.linalg.solve(A, WD.T).T).float()


def gptq_quantize(W: torch.Tensor, H: torch.Tensor, grid: Grid, *, damp: float = 0.01,
                  block: int = 128, compensate: bool = True, act_order: bool = False,
                  refit: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Quantize W [out, in] on `grid` against Hessian H [in, in]: (dequantized values, bytes).

    compensate=False skips the error feedback (the grid fit still sees H's diagonal): the
    ablation the tests use to show the compensation is what lowers the error.
    refit=N (grids with one scale per group, `Grid.scaled`): N rounds of refitting every group's
    scale to the codes GPTQ chose (refit_scales) and running GPTQ again on those fixed scales;
    each row keeps whichever result has the least output error, so refit never makes a row worse."""
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
    Hp = H[perm][:, perm]
    # Damping: more until the Cholesky factorization succeeds (a rank-deficient H from few tokens).
    lam = damp * float(diag.mean())
    for _ in range(8):
        try:
            L = torch.linalg.cholesky(Hp + lam * torch.eye(cols, dtype=H.dtype))
            Hinv = torch.cholesky_inverse(L)
            U = torch.linalg.cholesky(Hinv, upper=True)
            break
        except RuntimeError:
            lam *= 10.0
    else:
        raise InvalidArgumentError("GPTQ: the calibration Hessian is not positive definite even with "
                                   "strong damping; give more calibration tokens")
    Q, params = _gptq_pass(W[:, perm], U, grid, perm, diag, block, compensate, static)
    if refit and getattr(grid, "scaled", False):
        Hd = H + lam * torch.eye(cols, dtype=H.dtype)
        err = _row_errors(W, Q, H)
        for _ in range(refit):
            # New scales for the codes GPTQ chose, then GPTQ again with those scales fixed: the
            # codes follow the scales, and the scales the codes.
            p2 = refit_scales(W, Hd, grid, Q, params)
            Q2 = grid.dequantize(grid.scale_codes(Q.float(), params)[0], p2).double()
            Q, params, err = _keep_better(grid, Q, params, err, Q2, p2, _row_errors(W, Q2, H))
            Q3, p3 = _gptq_pass(W[:, perm], U, grid, perm, diag, block, compensate, p2)
            Q, params, err = _keep_better(grid, Q, params, err, Q3, p3, _row_errors(W, Q3, H))
    Qf = Q.float()
    return Qf, grid.encode(Qf, params)


def _gptq_pass(W: torch.Tensor, U: torch.Tensor, grid: Grid, perm: torch.Tensor, diag: torch.Tensor,
               block: int, compensate: bool, static: Optional[list]) -> tuple[torch.Tensor, list]:
    """One GPTQ sweep over W's columns (already in the order `perm`): (values in the original
    column order, group parameters). static: every group's parameters fixed up front (act_order,
    refit); None: each group fitted on its columns as compensation left them."""
    W = W.clone()
    rows, cols = W.shape
    g = grid.group
    Q = torch.zeros_like(W)
    params: list = []
    # the per-column update's outer product goes to one buffer: a fresh [rows, block] tensor per
    # column is a multi-MB allocation that the CLI's fixed mmap threshold maps and unmaps, i.e.
    # page faults on every column (the same products and differences either way)
    outer = torch.empty(rows, block, dtype=W.dtype)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            src = int(perm[col])
            if static is not None:
                q = grid.quantize(W1[:, i:i + 1].float(), static[src // g], src % g).double()[:, 0]
            else:
                if col % g == 0:
                    p = grid.fit(W1[:, i:i + g].float(), diag[col:col + g].float())
                    params.append(p)
                q = grid.quantize(W1[:, i:i + 1].float(), params[-1], col % g).double()[:, 0]
            Q[:, src] = q
            if compensate:
                err = (W1[:, i] - q) / U1[i, i]
                prod = outer[:, :i2 - i1 - i]
                torch.mul(err[:, None], U1[i, i:][None, :], out=prod)
                W1[:, i:] -= prod
                E1[:, i] = err
        if compensate:
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q, list(static) if static is not None else params


def _row_errors(W: torch.Tensor, Q: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Each row's output error (w − q) H (w − q)ᵀ: rows are independent, so each may keep its best."""
    D = (W - Q).double()
    return ((D @ H) * D).sum(1)


def _keep_better(grid: Grid, Q, params, err, Q2, p2, err2):
    better = err2 < err
    Q = torch.where(better[:, None], Q2, Q)
    params = [tuple(torch.where(better.view(-1, *([1] * (a.dim() - 1))), b, a) for a, b in zip(pa, pb))
              for pa, pb in zip(params, p2)]
    return Q, params, torch.where(better, err2, err)


def refit_scales(W: torch.Tensor, H: torch.Tensor, grid: Grid, Q: torch.Tensor, params: list) -> list:
    """Hessian-weighted least squares for every group's scale with the codes held fixed: per row,
    minimize (w − Σ_b d_b c_b) H (w − Σ_b d_b c_b)ᵀ over the group scales d (c_b: the row's
    integer codes in group b, zero elsewhere), i.e. solve M d = v with
    M[b, b'] = Σ_{i∈b, j∈b'} c_i H_ij c_j and v[b] = Σ_{i∈b} c_i (H wᵀ)_i. Scales are rounded
    to the f16 the file stores; a group whose codes are all zero keeps its scale."""
    rows, cols = W.shape
    g = grid.group
    nb = cols // g
    C, D0 = grid.scale_codes(Q.float(), params)
    C = C.double().reshape(rows, nb, g)
    Hb = H.double().reshape(nb, g, nb, g)
    HW = (W.double() @ H.double()).reshape(rows, nb, g)
    v = (C * HW).sum(2)                                       # [rows, nb]
    out = torch.empty(rows, nb, dtype=torch.float64)
    step = max(1, (1 << 25) // max(cols * nb, 1))             # rows per chunk: bounded memory
    for r0 in range(0, rows, step):
        c = C[r0:r0 + step]
        # T[r, b, i, b'] = Σ_j H[b, i, b', j] c[r, b', j];  M[r, b, b'] = Σ_i c[r, b, i] T[r, b, i, b']
        T = torch.einsum("bicj,rcj->rbic", Hb, c)
        M = torch.einsum("rbi,rbic->rbc", c, T)
        empty = (c == 0).all(2)                               # [r, nb]
        eye = torch.eye(nb, dtype=M.dtype)
        M = M + empty[:, :, None] * eye + 1e-12 * M.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye
        d = torch.linalg.solve(M, v[r0:r0 + step].unsqueeze(-1))[..., 0]
        out[r0:r0 + step] = torch.where(empty, D0[r0:r0 + step].double(), d)
    return grid.with_scales(params, out.float().clamp(-65504.0, 65504.0).half().float())


def output_error(W: torch.Tensor, Wq: torch.Tensor, X: torch.Tensor) -> float:
    """Mean squared error of the layer's output on inputs X: ‖X(W − Wq)ᵀ‖² / (tokens · out)."""
    d = X.reshape(-1, X.shape[-1]).float() @ (W - Wq).float().T
    return float(d.pow(2).mean())


def output_error_h(W: torch.Tensor, Wq: torch.Tensor, H: torch.Tensor) -> float:
    """output_error from the Hessian alone: tr(ΔW H ΔWᵀ) / 2 / out."""
    D = (W - Wq).double()
    return float(((D @ H.double()) * D).sum() / 2.0 / W.shape[0])


