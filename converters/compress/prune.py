"""Structured pruning by calibration importance: FFN channels, attention heads (whole KV groups:
a KV head with the query heads that read it, so GQA stays intact) and whole layers. The result is
a smaller dense model whose per-layer widths may differ (docs/format.md, `layer_*` hparams).

Importance, measured on the calibration sequences with the unpruned model:
  act     activation × weight: the mean norm of a unit's contribution to the residual stream —
          E|a_c|·‖W_down[:, c]‖ for FFN channel c, E‖W_o,h · att_h‖ summed over a group's query
          heads — and for layers the block influence 1 − cos(x_in, x_out) (ShortGPT);
  taylor  first order Taylor: |Σ w·∂L/∂w| over a unit's weights, the loss change its removal is
          estimated to cause (L: next-token cross-entropy on the calibration sequences).
Refit (`refit=1`): after FFN channels are removed, each layer's down projection is re-solved by
least squares so that the kept channels reproduce the full FFN's output on the calibration
activations (layer-wise feature distillation in closed form; the pruned model's own activations,
layer by layer in order, so later layers also absorb earlier layers' changes):

    W_down' = argmin ‖A_kept W'ᵀ − A_full W_downᵀ‖² + λ‖W'‖²  =  W_down G_full,kept (G_kept,kept + λI)⁻¹

with G = AᵀA the Gram matrix of the full FFN's activations (gate/up of the source weights) and
λ a small fraction of mean diag G_kept,kept. It costs one forward pass over the calibration set.

Units are ranked across all layers at once, so pruning is uneven where importance says so. FFN
widths are kept a multiple of the block size (32) when the source's are, so every matrix still
quantizes to whole blocks; every layer keeps at least one block of channels and one KV group.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import torch

from edgert.errors import InvalidArgumentError

from ..llama_tensor_names import name as reg
from . import forward
from .model_desc import ModelDesc

IMPORTANCE = ("act", "taylor")
_LAYER_IDS = ("ATTN_NORM", "ATTN_Q", "ATTN_K", "ATTN_V", "ATTN_Q_BIAS", "ATTN_K_BIAS", "ATTN_V_BIAS",
              "ATTN_OUTPUT", "FFN_NORM", "FFN_GATE", "FFN_UP", "FFN_DOWN")


@dataclass
class PruneSpec:
    ffn: float = 0.0      # fraction of all FFN channels removed
    heads: float = 0.0    # fraction of all KV groups removed
    layers: int = 0       # whole layers removed
    importance: str = "act"
    refit: int = 0        # 1: re-solve each pruned layer's down projection by least squares
    chunk: int = 4

    @property
    def active(self) -> bool:
        return self.ffn > 0 or self.heads > 0 or self.layers > 0

    def validate(self, desc: ModelDesc) -> None:
        if self.refit not in (0, 1):
            raise InvalidArgumentError(f"--prune refit={self.refit}: 0 or 1")
        if self.importance not in IMPORTANCE:
            raise InvalidArgumentError(f"prune importance {self.importance!r}: choose {' or '.join(IMPORTANCE)}")
        for what, v in (("ffn", self.ffn), ("heads", self.heads)):
            if not 0.0 <= v < 1.0:
                raise InvalidArgumentError(
                    f"--prune {what}={v}: the fraction removed must be in [0, 1); 1 would remove every "
                    f"{'FFN channel' if what == 'ffn' else 'attention head'} and leave no model")
        if not 0 <= self.layers < desc.n_layers:
            raise InvalidArgumentError(f"--prune layers={self.layers}: the model has {desc.n_layers} "
                                       f"layers; remove between 0 and {desc.n_layers - 1}")
        total_f = sum(desc.layer_dims(l).ffn for l in range(desc.n_layers))
        keep_f = total_f * (1 - self.ffn)
        if keep_f < desc.n_layers:
            raise InvalidArgumentError(f"--prune ffn={self.ffn} leaves {keep_f:.0f} channels for "
                                       f"{desc.n_layers} layers; every layer needs at least one")


@dataclass
class PruneResult:
    ffn_widths: list[int] = field(default_factory=list)
    kv_heads: list[int] = field(default_factory=list)
    removed_layers: list[int] = field(default_factory=list)
    ffn_keep: list = field(default_factory=list, repr=False)    # source channel indices per kept layer
    layer_map: list[int] = field(default_factory=list, repr=False)  # kept layer -> source layer

    def as_dict(self) -> dict:
        return {"ffn_widths": self.ffn_widths, "kv_heads": self.kv_heads, "removed_layers": self.removed_layers}


def _importance_act(desc: ModelDesc, ids: torch.Tensor, chunk: int):
    W, hp = desc.weights, desc.hparams
    L, dh = desc.n_layers, desc.head_dim
    freqs = forward.inv_freq(W, hp)
    ffn = [torch.zeros(desc.layer_dims(l).ffn, dtype=torch.float64) for l in range(L)]
    grp = [torch.zeros(desc.layer_dims(l).kv_heads, dtype=torch.float64) for l in range(L)]
    bi = torch.zeros(L, dtype=torch.float64)
    n_tok = 0
    with torch.no_grad():
        for i in range(0, ids.shape[0], chunk):
            x = forward.embed(W, ids[i:i + chunk])
            n_tok += x.shape[0] * x.shape[1]
            for l in range(L):
                d = desc.layer_dims(l)
                heads: list = []
                acts: list = []
                h = forward.attention_block(W, hp, l, x, 0, freqs, head_out=heads)
                att = heads[0]  # [B, T, heads, dh]
                wo = W[reg("ATTN_OUTPUT", l)].view(-1, d.heads, dh)  # [H, heads, dh]
                contrib = torch.einsum("bthd,ohd->btho", att, wo).norm(dim=-1)  # [B, T, heads]
                per_head = contrib.sum((0, 1)).double()
                grp[l] += per_head.view(d.kv_heads, d.heads // d.kv_heads).sum(1)
                y = forward.ffn_block(W, hp, l, h, act_out=acts)
                ffn[l] += (acts[0].abs().sum((0, 1)) * W[reg("FFN_DOWN", l)].norm(dim=0)).double()
                bi[l] += (1 - torch.nn.functional.cosine_similarity(x, y, dim=-1)).sum().double()
                x = y
    return [f / n_tok for f in ffn], [g / n_tok for g in grp], bi / n_tok


def _importance_taylor(desc: ModelDesc, ids: torch.Tensor, chunk: int):
    W = {k: v.detach().clone().requires_grad_(True) for k, v in desc.weights.items()}
    L, dh = desc.n_layers, desc.head_dim
    for i in range(0, ids.shape[0], chunk):
        b = ids[i:i + chunk]
        lg = forward.logits(W, desc.hparams, b)
        loss = torch.nn.functional.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1),
                                                 reduction="sum") / ids[:, 1:].numel()
        loss.backward()
    wg = {k: (v.detach() * v.grad).double() for k, v in W.items() if v.grad is not None}
    ffn, grp, lay = [], [], torch.zeros(L, dtype=torch.float64)
    for l in range(L):
        d = desc.layer_dims(l)
        ffn.append((wg[reg("FFN_GATE", l)].sum(1) + wg[reg("FFN_UP", l)].sum(1)
                    + wg[reg("FFN_DOWN", l)].sum(0)).abs())
        r = d.heads // d.kv_heads
        q = wg[reg("ATTN_Q", l)].view(d.kv_heads, r * dh, -1).sum((1, 2))
        k = wg[reg("ATTN_K", l)].view(d.kv_heads, dh, -1).sum((1, 2))
        v = wg[reg("ATTN_V", l)].view(d.kv_heads, dh, -1).sum((1, 2))
        o = wg[reg("ATTN_OUTPUT", l)].view(-1, d.kv_heads, r * dh).sum((0, 2))
        grp.append((q + k + v + o).abs())
        lay[l] = abs(sum(float(wg[reg(id, l)].sum()) for id in _LAYER_IDS if reg(id, l) in wg))
    return ffn, grp, lay


def importance(desc: ModelDesc, ids: torch.Tensor, spec: PruneSpec):
    """(per-layer FFN channel scores, per-layer KV group scores, per-layer scores)."""
    if spec.importance == "taylor":
        return _importance_taylor(desc, ids, spec.chunk)
    return _importance_act(desc, ids, spec.chunk)


def _allocate(scores: list[torch.Tensor], frac: float, multiple: int, minimum: int) -> list[torch.Tensor]:
    """Indices kept per layer: the globally best (1 − frac) of the units, each layer's count
    rounded to a multiple of `multiple` (at least `minimum`). No layer loses more than
    min(2·frac, 0.9) of its units: importance measured before pruning misjudges a layer that
    would lose nearly everything, and a later layer's residual contributions are larger."""
    sizes = [len(s) for s in scores]
    keep_total = round(sum(sizes) * (1 - frac))
    cap = min(2 * frac, 0.9)
    floor = [max(minimum, int(math.ceil(n * (1 - cap)))) for n in sizes]
    ranked = [torch.argsort(s, descending=True, stable=True) for s in scores]
    # Each layer's floor is kept first; the rest of the budget goes by global rank.
    counts = list(floor)
    rest = torch.cat([s[r[f:]] for s, r, f in zip(scores, ranked, floor)])
    owner = torch.cat([torch.full((n - f,), i) for i, (n, f) in enumerate(zip(sizes, floor))])
    extra = max(keep_total - sum(floor), 0)
    for i in owner[torch.argsort(rest, descending=True, stable=True)[:extra]].tolist():
        counts[i] += 1
    kept = []
    for r, n, c, f in zip(ranked, sizes, counts, floor):
        if multiple > 1:
            c = int(round(c / multiple)) * multiple
        c = min(max(c, minimum), n)
        kept.append(torch.sort(r[:c]).values)
    return kept


def apply(desc: ModelDesc, ffn_keep: list[torch.Tensor], grp_keep: list[torch.Tensor],
          drop_layers: list[int], *, drop_source: bool = False) -> ModelDesc:
    """A new ModelDesc with only the kept channels, groups and layers (renumbered).
    drop_source empties desc as it goes, so the two never coexist in memory."""
    dh = desc.head_dim
    dims = [desc.layer_dims(l) for l in range(desc.n_layers)]
    W = desc.weights if not drop_source else desc.weights.copy()
    if drop_source:
        desc.weights.clear()
    out: dict[str, torch.Tensor] = {}
    layer_map = [l for l in range(desc.n_layers) if l not in set(drop_layers)]
    new_of = {old: new for new, old in enumerate(layer_map)}
    for name in list(W):
        t = W.pop(name) if drop_source else W[name]
        if not name.startswith("blk."):
            out[name] = t
            continue
        l = int(name.split(".")[1])
        if l not in new_of:
            continue
        d = dims[l]
        r = d.heads // d.kv_heads
        fk = ffn_keep[l]
        kv_rows = torch.cat([torch.arange(g * dh, (g + 1) * dh) for g in grp_keep[l].tolist()])
        q_rows = torch.cat([torch.arange(g * r * dh, (g + 1) * r * dh) for g in grp_keep[l].tolist()])
        kind = name.split(".", 2)[2]
        if kind in ("ffn_gate.weight", "ffn_up.weight"):
            t = t[fk]
        elif kind == "ffn_down.weight":
            t = t[:, fk]
        elif kind in ("attn_q.weight", "attn_q.bias"):
            t = t[q_rows]
        elif kind in ("attn_k.weight", "attn_v.weight", "attn_k.bias", "attn_v.bias"):
            t = t[kv_rows]
        elif kind == "attn_output.weight":
            t = t[:, q_rows]
        out[f"blk.{new_of[l]}.{kind}"] = t.contiguous()
    # Keep the file's tensor order: globals where they were, layers in their new order.
    hp = dict(desc.hparams)
    hp["num_layers"] = len(layer_map)
    return ModelDesc(desc.name, hp, desc.tokenizer, desc.chat_template, out, {}, dict(desc.source))


def prune_model(desc: ModelDesc, ids: torch.Tensor, spec: PruneSpec, *, progress: bool = False,
                drop_source: bool = False) -> tuple[ModelDesc, PruneResult]:
    spec.validate(desc)
    if progress:
        print(f"pruning: measuring {spec.importance} importance on {ids.shape[0]} sequences", file=sys.stderr)
    ffn_s, grp_s, lay_s = importance(desc, ids, spec)
    L = desc.n_layers
    drop = sorted(torch.argsort(lay_s, stable=True)[:spec.layers].tolist()) if spec.layers else []
    widths = [desc.layer_dims(l).ffn for l in range(L)]
    multiple = 32 if all(w % 32 == 0 for w in widths) else 1
    live = [l for l in range(L) if l not in drop]
    ffn_keep = [torch.arange(w) for w in widths]
    grp_keep = [torch.arange(desc.layer_dims(l).kv_heads) for l in range(L)]
    if spec.ffn > 0:
        kept = _allocate([ffn_s[l] for l in live], spec.ffn, multiple, multiple)
        for l, k in zip(live, kept):
            ffn_keep[l] = k
    if spec.heads > 0:
        kept = _allocate([grp_s[l] for l in live], spec.heads, 1, 1)
        for l, k in zip(live, kept):
            grp_keep[l] = k
    out = apply(desc, ffn_keep, grp_keep, drop, drop_source=drop_source)
    res = PruneResult([out.layer_dims(l).ffn for l in range(out.n_layers)],
                      [out.layer_dims(l).kv_heads for l in range(out.n_layers)], drop,
                      [ffn_keep[l] for l in live], live)
    return out, res


@torch.no_grad()
def refit_ffn(pruned: ModelDesc, source: ModelDesc, res: PruneResult, ids: torch.Tensor, *,
              damp: float = 1e-3, chunk: int = 4, progress: bool = False) -> list[float]:
    """Re-solve the down projection of every layer that lost FFN channels (module docstring), in
    place on `pruned`. Returns, per layer, the relative output error of the FFN on the calibration
    activations after the refit (0 for untouched layers)."""
    W, hp = pruned.weights, pruned.hparams
    S = source.weights
    eps = float(hp["rms_norm_eps"])
    freqs = forward.inv_freq(W, hp)
    xs = [forward.embed(W, ids[i:i + chunk]) for i in range(0, ids.shape[0], chunk)]
    errs = []
    for l in range(pruned.n_layers):
        src = res.layer_map[l]
        keep = res.ffn_keep[l]
        hs = [forward.attention_block(W, hp, l, x, 0, freqs) for x in xs]
        full = S[reg("FFN_DOWN", src)].shape[1]
        if len(keep) == full:
            errs.append(0.0)
            xs = [forward.ffn_block(W, hp, l, h) for h in hs]
            continue
        wg, wu, wd = S[reg("FFN_GATE", src)], S[reg("FFN_UP", src)], S[reg("FFN_DOWN", src)].double()
        G = torch.zeros(full, full, dtype=torch.float64)
        for h in hs:
            n = forward.rms_norm(h, W[reg("FFN_NORM", l)], eps)
            a = (torch.nn.functional.silu(n @ wg.T) * (n @ wu.T)).reshape(-1, full).double()
            G += a.T @ a
        Gkk = G[keep][:, keep]
        lam = damp * float(Gkk.diagonal().mean())
        rhs = G[keep] @ wd.T                                    # [kept, hidden]
        new = torch.linalg.solve(Gkk + lam * torch.eye(len(keep), dtype=G.dtype), rhs).T  # [hidden, kept]
        # Relative error of the layer's FFN output before and after, from the Gram matrix alone.
        def err(Wk):
            D = torch.zeros_like(wd)
            D[:, keep] = Wk
            D = D - wd
            return float(((D @ G) * D).sum())
        ref = float(((wd @ G) * wd).sum())
        old_err, new_err = err(W[reg("FFN_DOWN", l)].double()), err(new)
        if new_err < old_err:  # ridge never should lose, but keep the better of the two
            W[reg("FFN_DOWN", l)] = new.float().contiguous()
        errs.append(min(old_err, new_err) / max(ref, 1e-30))
        if progress:
            print(f"\rrefit: layer {l + 1}/{pruned.n_layers}, FFN output error {old_err / max(ref, 1e-30):.4f} -> "
                  f"{errs[-1]:.4f}", end="", file=sys.stderr, flush=True)
        xs = [forward.ffn_block(W, hp, l, h) for h in hs]
    if progress:
        print(file=sys.stderr)
    return errs
