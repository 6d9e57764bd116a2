"""Knowledge distillation: heal a pruned (or otherwise damaged) student by training it to match the
teacher's next-token distributions on the calibration sequences (Hinton et al., 2015):

    loss = T² · KL(softmax(teacher / T) ‖ softmax(student / T))   (mean over tokens)
         + hidden_weight · ‖h_s − h_t‖² / ‖h_t‖²                  (last hidden state, optional)

torch on CPU (the optional extra `edgert[compress]`), AdamW, every weight trained.

Interruptions: Ctrl-C (SIGINT) lets the running step finish, saves a checkpoint and raises
DistillInterrupted; a checkpoint is also saved every `checkpoint_every` seconds (against a hard
kill). Rerunning the same command resumes from it. A step's batch depends only on (seed, step),
and the checkpoint holds the weights and the optimizer state, so a resumed run computes exactly
what an uninterrupted one would have.
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from edgert.errors import EdgertError, InvalidArgumentError

from . import forward
from .model_desc import ModelDesc


class DistillInterrupted(EdgertError):
    """Distillation stopped on Ctrl-C after saving a checkpoint; rerun to resume."""


SCHEDULES = ("const", "cos")


@dataclass
class DistillSpec:
    steps: Optional[int] = None          # optimizer steps; or
    time_budget: Optional[float] = None  # seconds of training (whichever ends first)
    lr: float = 2e-4
    temperature: float = 2.0
    hidden_weight: float = 0.0
    batch: int = 4
    seed: int = 0
    checkpoint_every: float = 600.0     # seconds between checkpoints (Ctrl-C always saves one)
    # Learning rate over the run: "const", or "cos" (cosine from lr down to 0 at the end of the
    # run: of `steps`, or of `time_budget` by elapsed training time, whichever is nearer its end).
    schedule: str = "const"

    @property
    def active(self) -> bool:
        return bool(self.steps) or bool(self.time_budget)

    def validate(self) -> None:
        if self.steps is not None and self.steps < 0:
            raise InvalidArgumentError(f"--distill steps={self.steps}: must be >= 0")
        if self.time_budget is not None and self.time_budget <= 0:
            raise InvalidArgumentError(f"--time-budget {self.time_budget}: must be > 0 seconds")
        if not self.lr > 0 or not self.temperature > 0 or self.batch < 1 or self.hidden_weight < 0:
            raise InvalidArgumentError("--distill: lr and T must be > 0, batch >= 1, hidden >= 0")
        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"schedule={self.schedule!r}: one of {', '.join(SCHEDULES)}")
        if self.schedule == "cos" and not (self.steps or self.time_budget):
            raise InvalidArgumentError("schedule=cos decays the learning rate to 0 at the end of the run: "
                                       "give steps=N or a time budget")

    def lr_at(self, step: int, elapsed: float) -> float:
        """The learning rate of the step that starts after `step` steps and `elapsed` seconds."""
        if self.schedule == "const":
            return self.lr
        done = max(step / self.steps if self.steps else 0.0,
                   elapsed / self.time_budget if self.time_budget else 0.0)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))


def _fingerprint(student: ModelDesc, teacher: ModelDesc, ids: torch.Tensor, spec: DistillSpec,
                 trained: dict[str, torch.Tensor]) -> str:
    """What a checkpoint must match to be resumed: the run's settings, shapes and data."""
    h = hashlib.sha256()
    # A cosine schedule's rates depend on the run's length too, so it is part of what resumes.
    skip = ("checkpoint_every",) if spec.schedule == "cos" else ("steps", "time_budget", "checkpoint_every")
    cfg = {k: v for k, v in asdict(spec).items() if k not in skip}
    h.update(repr((type(spec).__name__, sorted(cfg.items()))).encode())
    for d in (student, teacher):
        h.update(repr([(k, d.shape(k)) for k in d.weights]).encode())
    h.update(repr([(k, tuple(v.shape)) for k, v in trained.items()]).encode())
    h.update(ids.numpy().tobytes())
    for k in ("token_embd.weight",):
        h.update(teacher.weights[k][:4].numpy().tobytes())
    return h.hexdigest()


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def distill_loss(s_logits, t_logits, T: float, s_hidden=None, t_hidden=None, hidden_weight: float = 0.0):
    V = s_logits.shape[-1]
    kl = F.kl_div(F.log_softmax(s_logits.reshape(-1, V) / T, -1), F.log_softmax(t_logits.reshape(-1, V) / T, -1),
                  log_target=True, reduction="batchmean") * (T * T)
    if hidden_weight > 0 and s_hidden is not None:
        kl = kl + hidden_weight * (s_hidden - t_hidden).pow(2).mean() / t_hidden.pow(2).mean().clamp_min(1e-12)
    return kl


class _AllWeights:
    """The default parametrisation: every weight of the student is trained as it is."""

    def __init__(self, student: ModelDesc):
        self.student = student
        self.params = dict(student.weights)

    def weights(self, P: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return P

    def finish(self, P: dict[str, torch.Tensor]) -> None:
        for k, v in P.items():
            self.student.weights[k] = v.detach().clone()


def distill(student: ModelDesc, teacher: ModelDesc, ids: torch.Tensor, spec: DistillSpec, *,
            checkpoint: Optional[Path] = None, progress: bool = False,
            on_step: Optional[Callable[[int, float], None]] = None, params=None, desc: str = "distilling") -> dict:
    """Train student's weights in place. Returns {steps, seconds, first_loss, last_loss, resumed_from}.
    params: what is trained (default: every weight as it is) — an object with `params` (name ->
    initial tensor), `weights(P)` (the student's weights under P) and `finish(P)` (store P in the
    student); tune.ScaleParams trains a quantized model's block scales and norms."""
    spec.validate()
    params = params if params is not None else _AllWeights(student)
    W = {k: v.detach().clone().requires_grad_(True) for k, v in params.params.items()}
    opt = torch.optim.AdamW(list(W.values()), lr=spec.lr, betas=(0.9, 0.95), weight_decay=0.0)
    fp = _fingerprint(student, teacher, ids, spec, W)
    step, elapsed, first_loss, resumed = 0, 0.0, None, None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state.get("fingerprint") == fp:
            with torch.no_grad():
                for k, v in state["weights"].items():
                    W[k].copy_(v)
            opt.load_state_dict(state["optimizer"])
            step, elapsed, first_loss = state["step"], state["elapsed"], state.get("first_loss")
            resumed = step
            if progress:
                print(f"distillation: resuming from {checkpoint} at step {step}", file=sys.stderr)
        elif progress:
            print(f"distillation: {checkpoint} is from another run; starting over", file=sys.stderr)

    def save() -> None:
        if checkpoint is not None:
            _save(checkpoint, {"fingerprint": fp, "step": step, "elapsed": elapsed, "first_loss": first_loss,
                               "weights": {k: v.detach() for k, v in W.items()},
                               "optimizer": opt.state_dict()})

    total = spec.steps
    stop = {"flag": False}
    old_handler = None

    def on_sigint(signum, frame):
        stop["flag"] = True

    try:
        old_handler = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no Ctrl-C handling
        old_handler = None
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, unit="step", desc=desc, file=sys.stderr)
    last_save = time.monotonic()
    loss_v = float("nan")
    try:
        while True:
            if total is not None and step >= total:
                break
            if spec.time_budget is not None and elapsed >= spec.time_budget:
                break
            t0 = time.monotonic()
            for group in opt.param_groups:
                group["lr"] = spec.lr_at(step, elapsed)
            g = torch.Generator().manual_seed(spec.seed * 1_000_003 + step)
            batch = ids[torch.randint(0, ids.shape[0], (min(spec.batch, ids.shape[0]),), generator=g)]
            with torch.no_grad():
                t_logits, t_hidden = forward.logits(teacher.weights, teacher.hparams, batch, return_hidden=True)
            s_logits, s_hidden = forward.logits(params.weights(W), student.hparams, batch, return_hidden=True)
            loss = distill_loss(s_logits, t_logits, spec.temperature, s_hidden, t_hidden, spec.hidden_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = loss.item()
            if first_loss is None:
                first_loss = loss_v
            step += 1
            elapsed += time.monotonic() - t0
            if bar is not None:
                bar.set_postfix(loss=f"{loss_v:.4f}",
                                **({"left": f"{max(spec.time_budget - elapsed, 0):.0f}s"} if spec.time_budget else {}))
                bar.update(1)
            if on_step is not None:
                on_step(step, loss_v)
            if stop["flag"]:
                save()
                raise DistillInterrupted(
                    f"distillation interrupted after step {step}"
                    + (f"; checkpoint saved to {checkpoint}: rerun the same command to resume" if checkpoint
                       else " (no checkpoint file: the steps are lost)"))
            if checkpoint is not None and time.monotonic() - last_save >= spec.checkpoint_every:
                save()
                last_save = time.monotonic()
    finally:
        if bar is not None:
            bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    with torch.no_grad():
        params.finish(W)
    return {"steps": step, "seconds": round(elapsed, 1), "first_loss": first_loss, "last_loss": loss_v,
            "resumed_from": resumed}
