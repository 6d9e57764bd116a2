"""Draft sources for speculative decoding, and the rejection test that keeps sampled output on the
target model's distribution. The token loop that verifies drafts is edgert.session.Session.steps.

Two sources, one interface (begin / propose / feedback):
  PromptLookup  n-gram drafts from the context itself (no second model): when the last n tokens
                occurred earlier, propose what followed them. Pays on input-grounded tasks
                (summarise, rewrite, edit code) where the answer copies spans of the prompt.
  DraftModel    a smaller model with the same vocabulary proposes k tokens, one cheap decode
                step each, in its own context.

Both adapt their draft length to what the target accepts and back off after rejections, so a
text that cannot be copied costs little more than plain decoding (benchmarks/bench_speculative.py
measures it at 0% acceptance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError
from .model import ContextParams, Model, Sampler, SamplerParams

# Draft tokens verified per pass, at most. A batch of >= 16 rows written from the start of an int4
# key block derives that block's offset from the batch (kv_cache.h, kKvMinOffsetRows), where
# one-token decode derives it from the previous block; 1 + 14 rows keeps the verification pass on
# the decode rule, so greedy output stays identical with q4 keys.
MAX_DRAFT = 14


MODES = ("auto", "lookup", "draft", "off")


def draft_for(mode: str, params: SamplerParams, draft_model: Optional["DraftModel"]) -> object:
    """The draft source a request uses, or None for the plain loop. "auto": the draft model when
    there is one, else prompt lookup for greedy requests (identical tokens; a sampled request
    stays on the plain loop so its seed reproduces the native generate loop); "lookup" and
    "draft" force one; "off" never speculates."""
    if mode not in MODES:
        raise InvalidArgumentError(f"speculative={mode!r}; use one of {', '.join(MODES)}")
    if mode == "off":
        return None
    if mode in ("auto", "draft") and draft_model is not None:
        return draft_model
    if mode == "draft":
        raise InvalidArgumentError("speculative='draft' needs a draft model (LLM(..., draft=PATH), "
                                   "--draft MODEL)")
    if mode == "lookup" or not params.temperature > 0:
        return PromptLookup()
    return None


@dataclass
class Drafts:
    tokens: list[int]
    # The draft model's distribution for each token (sampled mode), None for a deterministic
    # proposal (prompt lookup, or greedy).
    probs: Optional[list[np.ndarray]] = None


def _sample_from(weights: np.ndarray, rng: np.random.Generator) -> int:
    cum = np.cumsum(weights, dtype=np.float64)
    total = cum[-1]
    if not total > 0:
        raise InvalidArgumentError("speculative sampling met an empty distribution")
    return int(min(np.searchsorted(cum, rng.random() * total, side="right"), len(cum) - 1))


def verify_sampled(p: np.ndarray, q: Optional[np.ndarray], d: int,
                   rng: np.random.Generator) -> tuple[bool, int]:
    """The standard rejection test (Leviathan et al. 2023; Chen et al. 2023): accept the draft d
    with probability min(1, p[d] / q[d]); otherwise draw from max(p - q, 0), renormalized. The
    token that comes out is distributed as p, whatever q is. q None means d was proposed with
    certainty (q one-hot at d): accept with probability p[d], else draw from p without d.
    Returns (accepted, token)."""
    if q is None:
        if rng.random() < p[d]:
            return True, d
        residual = p.astype(np.float64, copy=True)
        residual[d] = 0.0
        return False, _sample_from(residual, rng)
    qd = float(q[d])
    if qd > 0 and rng.random() < min(1.0, float(p[d]) / qd):
        return True, d
    residual = np.maximum(p.astype(np.float64) - q.astype(np.float64), 0.0)
    if not residual.sum() > 0:  # p == q up to rounding: any draw from p is right
        residual = p.astype(np.float64)
    return False, _sample_from(residual, rng)


# Drafts a generation starts with: they double (up to max_draft) while all are accepted. A
# verification pass costs about as much as one decode step up to ~4 drafts and grows beyond
# (TinyLlama shape, one thread: 1 + 4 rows 1.12x a step, 1 + 10 rows 1.88x; SmolLM2 1.49x and
# 2.32x), so a first draft of max_draft that the target rejects costs most of a step for nothing;
# starting short and growing costs a copyable text only one or two shorter passes.
START_DRAFT = 4
# Tokens waited, at most, between drafts while nothing is accepted (the wait doubles 1, 2, 4 ...
# after each pass that accepted nothing): bounds the cost at 0% acceptance to one 1-draft pass
# (~1.0-1.1 decode steps) per MAX_BACKOFF + 1 tokens, while text that becomes copyable again is
# drafted for again within 16 tokens.
MAX_BACKOFF = 16


class _Adaptive:
    """Draft length that follows acceptance: starts at START_DRAFT, doubles while everything is
    accepted, shrinks to what was accepted, and after passes where nothing was accepted waits
    1, 2, 4 ... MAX_BACKOFF tokens before drafting again (the cost bound when the text cannot be
    copied)."""

    def __init__(self, max_draft: int) -> None:
        self.max_draft = max(1, min(MAX_DRAFT, int(max_draft)))
        self.reset()

    def reset(self) -> None:
        self.k = min(START_DRAFT, self.max_draft)
        self.wait = 0
        self.backoff = 0

    def ready(self) -> bool:
        if self.wait > 0:
            self.wait -= 1
            return False
        return True

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        if n_accepted == 0:
            self.k = max(1, self.k // 2)
            self.backoff = min(MAX_BACKOFF, max(1, self.backoff * 2))
            self.wait = self.backoff
            return
        self.backoff = 0
        self.k = min(self.max_draft, self.k * 2 if n_accepted == n_drafted else n_accepted + 1)


class PromptLookup:
    """Drafts copied from the context: the longest suffix n-gram (max_ngram down to min_ngram
    tokens) seen before proposes the tokens that followed its latest earlier occurrence."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2, max_draft: int = 10) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise InvalidArgumentError("prompt lookup needs 1 <= min_ngram <= max_ngram")
        self.min_ngram, self.max_ngram = int(min_ngram), int(max_ngram)
        self._adapt = _Adaptive(max_draft)
        self._index: list[dict[tuple[int, ...], int]] = []
        self._indexed = 0

    def begin(self, history: Sequence[int], params: SamplerParams) -> None:
        self._adapt.reset()
        self._index = [dict() for _ in range(self.max_ngram + 1)]
        self._indexed = 0

    def _update(self, history: Sequence[int]) -> None:
        # n-gram ending just before position p -> p (its continuation); later occurrences win.
        for p in range(max(self._indexed, 1), len(history)):
            for n in range(self.min_ngram, min(self.max_ngram, p) + 1):
                self._index[n][tuple(history[p - n:p])] = p
        self._indexed = len(history)

    def propose(self, history: Sequence[int], room: int) -> Optional[Drafts]:
        self._update(history)
        if not self._adapt.ready():
            return None
        k = min(self._adapt.k, room)
        for n in range(min(self.max_ngram, len(history)), self.min_ngram - 1, -1):
            j = self._index[n].get(tuple(history[len(history) - n:]))
            if j is not None:
                tokens = list(history[j:j + k])
                return Drafts(tokens) if tokens else None
        return None

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        self._adapt.feedback(n_drafted, n_accepted)


class DraftModel:
    """A smaller model with the same vocabulary proposes the drafts (greedy when the target is
    greedy; sampled from its own distribution otherwise, which verify_sampled then needs)."""

    def __init__(self, model: Model, target_vocab: int, *, n_ctx: int, n_threads: int = 0,
                 kv_type: str = "auto", max_draft: int = 6, own_model: bool = False) -> None:
        if model.info.vocab_size != target_vocab:
            raise InvalidArgumentError(
                f"the draft model has vocab_size {model.info.vocab_size} but the target has "
                f"{target_vocab}; a draft model must share the target's tokenizer")
        self.model = model
        self._own_model = own_model
        self.ctx = model.new_context(ContextParams(n_ctx=n_ctx, n_threads=n_threads,
                                                   n_threads_batch=n_threads, kv_type=kv_type))
        self.cached: list[int] = []
        self._adapt = _Adaptive(max_draft)
        self._sampler: Optional[Sampler] = None
        self._greedy = True
        self._rng = np.random.default_rng(0)

    @classmethod
    def open(cls, path: str, target_vocab: int, **kw: object) -> "DraftModel":
        model = Model(path)
        try:
            return cls(model, target_vocab, own_model=True, **kw)  # type: ignore[arg-type]
        except BaseException:
            model.close()
            raise

    def begin(self, history: Sequence[int], params: SamplerParams) -> None:
        self._adapt.reset()
        self._greedy = not params.temperature > 0
        if self._sampler is not None:
            self._sampler.close()
        # The draft's own distribution q: the target's filters, no repetition history.
        self._sampler = Sampler(SamplerParams(params.temperature, params.top_k, params.top_p,
                                              params.min_p, seed=params.seed))
        self._rng = np.random.default_rng(params.seed ^ 0x5DEECE66D)

    def propose(self, history: Sequence[int], room: int) -> Optional[Drafts]:
        if not self._adapt.ready():
            return None
        k = min(self._adapt.k, room, self.ctx.n_ctx - len(history))
        if k <= 0:
            return None
        n = len(history)
        keep = 0
        m = min(len(self.cached), n - 1, self.ctx.n_past)
        while keep < m and self.cached[keep] == history[keep]:
            keep += 1
        self.ctx.trim(keep)
        del self.cached[keep:]
        logits = self.ctx.eval(list(history[keep:]))
        self.cached.extend(history[keep:])
        assert self._sampler is not None
        tokens: list[int] = []
        probs: list[np.ndarray] = []
        for i in range(k):
            if self._greedy:
                t = self._sampler.sample(logits)
            else:
                q = self._sampler.probs(logits)
                t = _sample_from(q, self._rng)
                probs.append(q)
            tokens.append(t)
            if i + 1 < k:
                logits = self.ctx.eval([t])
                self.cached.append(t)
        return Drafts(tokens, None if self._greedy else probs)

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        self._adapt.feedback(n_drafted, n_accepted)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        self.ctx.close()
        if self._own_model:
            self.model.close()
