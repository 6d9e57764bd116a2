"""The slots' forward passes, one at a time on all cores, with the one-token decode steps that
wait together run as ONE batched pass (Context.eval_batch: the weights are read once for every
conversation, which is what makes parallel slots pay on a CPU whose decode is bound by reading
the weights).

Each slot's worker thread calls enter() when a generation starts and leave() when it ends,
decode(ctx, token) for a plain decode step and run(fn) for any other pass (a prompt's prefill, a
speculative verification). There is no scheduler thread: the first caller that finds no pass
running runs one itself. A decode step first waits, at most GATHER_S, until every generation in
progress has its next pass waiting too (so slots that finish a step at slightly different times
still share the next pass, instead of alternating single-row passes), then takes every decode
step waiting; when the oldest waiting job is a whole pass, that pass runs alone. One client alone
runs exactly as without the batcher (it never waits: it is the only generation in progress).

A batched row equals that context's one-token eval bit for bit (edgert_eval_batch), so the
text a request gets does not depend on which requests it shared passes with.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import numpy as np

from ..model import Context


class _Job:
    __slots__ = ("ctx", "token", "fn", "done", "result", "error")

    def __init__(self, ctx: Optional[Context], token: int, fn: Optional[Callable[[], Any]]) -> None:
        self.ctx, self.token, self.fn = ctx, token, fn
        self.done = False
        self.result: Any = None
        self.error: Optional[BaseException] = None


# How long a decode step waits for the other generations' steps before its pass runs without
# them: far longer than the Python work between two steps of a slot (sampling, detokenizing,
# handing text to the event loop: well under a millisecond), far shorter than a forward pass
# of even a small model would make worth waiting for.
GATHER_S = 0.005


class DecodeBatcher:
    def __init__(self, max_batch: int) -> None:
        self.max_batch = max(1, max_batch)
        self._cond = threading.Condition()
        self._waiting: list[_Job] = []
        self._busy = False
        self._active = 0         # generations in progress (between enter and leave)
        self.passes = 0          # forward passes run (statistics for benchmarks and tests)
        self.batched_rows = 0    # decode steps that ran in a pass of more than one row

    def enter(self) -> None:
        with self._cond:
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()  # a gathering step may now have every step it waits for

    def decode(self, ctx: Context, token: int) -> np.ndarray:
        """ctx.eval([token]), possibly sharing its forward pass with other slots' steps."""
        return self._submit(_Job(ctx, token, None))

    def run(self, fn: Callable[[], Any]) -> Any:
        """fn() (a forward pass of its own) while no other pass runs."""
        return self._submit(_Job(None, 0, fn))

    def _take(self) -> list[_Job]:
        head = self._waiting[0]
        if head.fn is not None:
            del self._waiting[0]
            return [head]
        batch = [j for j in self._waiting if j.fn is None][:self.max_batch]
        taken = set(map(id, batch))
        self._waiting = [j for j in self._waiting if id(j) not in taken]
        return batch

    def _submit(self, job: _Job) -> Any:
        with self._cond:
            self._waiting.append(job)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._busy and not job.done:
                    self._cond.wait()
                if job.done:
                    break
                if self._waiting[0].fn is None:
                    deadline = time.monotonic() + GATHER_S
                    while not (job.done or self._busy) and len(self._waiting) < self._active:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    if job.done or self._busy:
                        continue
                batch = self._take()
                self._busy = True
            try:
                self._execute(batch)
            except BaseException as e:  # noqa: BLE001 - every job of the pass gets the error
                for j in batch:
                    if j.result is None and j.error is None:
                        j.error = e
            finally:
                with self._cond:
                    self._busy = False
                    for j in batch:
                        j.done = True
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.result

    def _execute(self, batch: list[_Job]) -> None:
        self.passes += 1
        if len(batch) > 1:
            try:
                rows = Context.eval_batch([j.ctx for j in batch], [j.token for j in batch])
            except Exception:
                # A batch fails as a whole before touching any cache (a full context, say):
                # run its steps one by one so each request gets its own result or error.
                pass
            else:
                self.batched_rows += len(batch)
                for i, j in enumerate(batch):
                    j.result = rows[i]
                return
        for j in batch:
            try:
                j.result = j.fn() if j.fn is not None else j.ctx.eval([j.token])
            except BaseException as e:  # noqa: BLE001 - handed to the thread that asked
                j.error = e
