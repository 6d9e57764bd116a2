"""The server's engine: ONE Model (weights mapped once) and N slots, each a Context with its own
Session (KV cache and the ids it holds), plus the bounded queue in front of them.

A request takes the free slot whose cache shares the longest prefix with its prompt, so a
growing chat comes back to its own slot and evaluates only its new tokens. Slots never share KV
state: a slot's cache is reused only for the ids it really holds (Session.reuse_prefix). When
every slot is busy, up to queue_size requests wait; one more gets QueueFull (HTTP 503).
Generation runs on a worker thread per request (the native eval releases the GIL), and stops
within one forward pass once its cancel event is set (a client that went away). With more than
one slot the forward passes go through one DecodeBatcher (edgert.server.batcher): one pass at a
time on all the threads, the decode steps of every slot that is waiting in ONE batched pass.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from ..model import ContextParams, Model
from ..session import Session, common_prefix_len
from ..tokenizer import Tokenizer
from .batcher import DecodeBatcher
from .settings import ServerSettings


class QueueFull(Exception):
    """Every slot is busy and the queue is full."""


@dataclass
class Slot:
    index: int
    session: Session
    busy: bool = False
    draft: Any = None   # this slot's draft model (its own context), when the server has one


class SlotPool:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.model = Model(settings.model)
        self.slots: list[Slot] = []
        self._draft_model: Optional[Model] = None
        n_slots = max(1, settings.parallel)
        # A batch has at most n_batch rows (512 by default, at most n_ctx; a larger batch would
        # only fall back to one-by-one steps).
        self.batcher = (DecodeBatcher(min(n_slots, 512)) if n_slots > 1 and settings.batch_decode
                        else None)
        try:
            self.tokenizer = Tokenizer.from_metadata(self.model.metadata)
            threads = settings.threads_per_slot()
            if settings.draft:
                self._draft_model = Model(settings.draft)
            for i in range(n_slots):
                ctx = self.model.new_context(ContextParams(
                    n_ctx=settings.n_ctx, n_threads=threads, n_threads_batch=threads,
                    kv_type=settings.kv_type))
                slot = Slot(i, Session(ctx, self.tokenizer))
                slot.session.batcher = self.batcher
                self.slots.append(slot)
                if self._draft_model is not None:
                    from ..speculative import DraftModel
                    slot.draft = DraftModel(self._draft_model, self.model.info.vocab_size,
                                            n_ctx=ctx.n_ctx, n_threads=threads,
                                            kv_type=settings.kv_type)
        except BaseException:
            self.close()
            raise
        self.n_ctx = self.slots[0].session.n_ctx
        self.executor = ThreadPoolExecutor(max_workers=len(self.slots),
                                           thread_name_prefix="edgert-slot")
        self._cond: Optional[asyncio.Condition] = None
        self.waiting = 0

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # made on the server's event loop
            self._cond = asyncio.Condition()
        return self._cond

    def _best_free(self, ids: list[int]) -> Optional[Slot]:
        free = [s for s in self.slots if not s.busy]
        if not free:
            return None
        return max(free, key=lambda s: (common_prefix_len(s.session.cached, ids), -s.index))

    async def acquire(self, ids: list[int], disconnected: Any = None) -> Slot:
        """A free slot for this prompt; waits in the bounded queue, QueueFull when it is full.
        disconnected: an async callable; a client gone while waiting gives up its place."""
        cond = self._condition()
        async with cond:
            slot = self._best_free(ids)
            if slot is None:
                if self.waiting >= self.settings.queue_size:
                    raise QueueFull()
                self.waiting += 1
                try:
                    while slot is None:
                        try:
                            await asyncio.wait_for(cond.wait(), timeout=0.5)
                        except asyncio.TimeoutError:
                            if disconnected is not None and await disconnected():
                                raise asyncio.CancelledError()
                        slot = self._best_free(ids)
                finally:
                    self.waiting -= 1
            slot.busy = True
            return slot

    async def release(self, slot: Slot) -> None:
        cond = self._condition()
        async with cond:
            slot.busy = False
            cond.notify_all()

    def close(self) -> None:
        for s in self.slots:
            if s.draft is not None:
                s.draft.close()
            s.session.ctx.close()
        if self._draft_model is not None:
            self._draft_model.close()
        self.model.close()
        ex = getattr(self, "executor", None)
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
