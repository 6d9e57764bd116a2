"""The quality report: after each stage (source → pruned → healed → quantized), perplexity on the
held-back calibration sequences and mean KL divergence KL(source ‖ stage) of the next-token
distributions over the whole vocabulary, with the bytes and bits per weight the stage's tensors
take. Computed in float32 on the stage's weights — for a quantized stage the exact values its
blocks decode to, i.e. what the runtime's exact mode computes.

The source's log-probabilities are kept in a temporary file (read back with plain file reads, so
they sit in the page cache, not in this process's resident memory), so a stage is compared against
the source after the source's weights are gone.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from . import forward
from .model_desc import ModelDesc
from .write import file_bytes


@dataclass
class StageQuality:
    stage: str
    ppl: float
    kld: Optional[float]   # None for the source itself
    bytes: int             # the stage's tensors as written (f32 where not quantized)
    bits_per_weight: float
    params: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ppl"] = round(self.ppl, 4)
        d["kld"] = None if self.kld is None else round(self.kld, 6)
        d["bits_per_weight"] = round(self.bits_per_weight, 3)
        return d


class QualityReport:
    def __init__(self, heldout: torch.Tensor, chunk: int = 1, tokens: int = 64):
        self.heldout = heldout
        self.chunk = chunk      # sequences per forward pass
        self.tokens = tokens    # positions per vocabulary-wide slice of log-probabilities
        self.stages: list[StageQuality] = []
        self._tmp = None        # the source's log-probabilities, [n, T - 1, V] float32
        self._row_bytes = 0

    def _logp(self, desc: ModelDesc, sl: slice):
        """Yield (first position, log-probabilities [b, k, V] float64 of the next token at positions
        first..first+k-1) for the held-back sequences sl, `tokens` positions at a time: the head's
        logits are the largest tensors here (vocabulary-wide), so they are made a slice at a time."""
        W, hp = desc.weights, desc.hparams
        ids = self.heldout[sl]
        with torch.no_grad():
            freqs = forward.inv_freq(W, hp)
            x = forward.embed(W, ids)
            for l in range(forward.n_layers_of(W)):
                x = forward.block(W, hp, l, x, 0, freqs)
            T = ids.shape[1] - 1  # the last position predicts nothing scored
            out = W["output.weight"] if "output.weight" in W else W["token_embd.weight"]
            for p in range(0, T, self.tokens):
                q = min(p + self.tokens, T)
                h = forward.rms_norm(x[:, p:q], W["output_norm.weight"], float(hp["rms_norm_eps"]))
                yield p, torch.log_softmax((h @ out.T).double(), -1)

    def measure(self, stage: str, desc: ModelDesc) -> StageQuality:
        n, T = self.heldout.shape
        V = int(desc.shape("token_embd.weight")[0])
        is_ref = self._tmp is None
        if is_ref:
            self._tmp = tempfile.TemporaryFile(prefix="edgert-compress-ref-")
            self._row_bytes = (T - 1) * V * 4
        nll, kl, count = 0.0, 0.0, 0
        for i in range(0, n, self.chunk):
            sl = slice(i, min(i + self.chunk, n))
            for p, lp in self._logp(desc, sl):
                k = lp.shape[1]
                tgt = self.heldout[sl][:, p + 1:p + 1 + k]
                nll -= float(lp.gather(-1, tgt[..., None]).sum())
                count += tgt.numel()
                for r in range(lp.shape[0]):
                    self._tmp.seek((sl.start + r) * self._row_bytes + p * V * 4)
                    if is_ref:
                        self._tmp.write(lp[r].float().numpy().tobytes())
                    else:
                        buf = self._tmp.read(k * V * 4)
                        ref = torch.from_numpy(np.frombuffer(buf, np.float32).reshape(k, V).copy()).double()
                        kl += float((ref.exp() * (ref - lp[r])).sum())
        nbytes = file_bytes(desc)
        params = desc.n_params()
        q = StageQuality(stage, math.exp(nll / count), None if is_ref else kl / count, nbytes,
                         8.0 * nbytes / params, params)
        self.stages.append(q)
        return q

    def table(self) -> str:
        rows = [f"{'stage':<10} {'PPL':>10} {'mean KLD':>10} {'params':>12} {'bytes':>14} {'bits/w':>7}"]
        for s in self.stages:
            kld = "-" if s.kld is None else f"{s.kld:.5f}"
            rows.append(f"{s.stage:<10} {s.ppl:>10.4f} {kld:>10} {s.params:>12,} {s.bytes:>14,} {s.bits_per_weight:>7.3f}")
        return "\n".join(rows)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None
