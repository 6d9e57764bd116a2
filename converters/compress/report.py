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
    def __init__(self, heldout: torch.Tensor, chunk: int = 1):
        self.heldout = heldout
        self.chunk = chunk
        self.stages: list[StageQuality] = []
        self._tmp = None        # the source's log-probabilities, [n, T - 1, V] float32
        self._row_bytes = 0

    def _logp(self, desc: ModelDesc, sl: slice) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(forward.logits(desc.weights, desc.hparams, self.heldout[sl]).double(), -1)

    def measure(self, stage: str, desc: ModelDesc) -> StageQuality:
        n, T = self.heldout.shape
        V = int(desc.weights["token_embd.weight"].shape[0])
        is_ref = self._tmp is None
        if is_ref:
            self._tmp = tempfile.TemporaryFile(prefix="edgert-compress-ref-")
            self._row_bytes = (T - 1) * V * 4
        nll, kl, count = 0.0, 0.0, 0
        for i in range(0, n, self.chunk):
            sl = slice(i, min(i + self.chunk, n))
            lp = self._logp(desc, sl)[:, :-1]
            tgt = self.heldout[sl][:, 1:]
            nll -= float(lp.gather(-1, tgt[..., None]).sum())
            count += tgt.numel()
            if is_ref:
                self._tmp.seek(sl.start * self._row_bytes)
                self._tmp.write(lp.float().numpy().tobytes())
            else:
                self._tmp.seek(sl.start * self._row_bytes)
                buf = self._tmp.read((sl.stop - sl.start) * self._row_bytes)
                ref = torch.from_numpy(np.frombuffer(buf, np.float32).reshape(lp.shape).copy()).double()
                kl += float((ref.exp() * (ref - lp)).sum())
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
