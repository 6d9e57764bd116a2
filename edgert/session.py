"""One conversation over one Context: the token ids the KV cache holds, prefix reuse, and the
token loop every text API runs (plain, grammar-constrained, or speculative).

edgert.LLM owns one Session; the server (edgert.server) gives each slot its own Session over a
shared Model. A Session is not thread-safe: one call at a time.

The loop mirrors edgert_generate (edgert.h): the prompt is evaluated, then sample → emit → eval,
one token per step. With a draft source (edgert.speculative) a step evaluates the sampled token
and k draft tokens in ONE batched forward pass (eval with all_logits), verifies the drafts
against those logits, and trims the rejected positions from the cache. Greedy output is the
same tokens as the plain loop: every verified row is the logits the plain loop would have
computed at that position (the forward pass computes each row with the same operations whatever
the batch; tests/test_speculative.py checks it), and the choice at each row is the same argmax.
Sampled output keeps the target distribution by the standard rejection scheme
(edgert.speculative.verify_sampled).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import ContextOverflowError, InvalidArgumentError
from .model import Context, Sampler, SamplerParams
from .stop_strings import StopStringFilter
from .tokenizer import Tokenizer

# Whether edgert_generate records the prompt in the sampler's repetition history (edgert.h:
# "Record a token (prompt or generated)"). The Python token loop must do the same, so that
# streaming and generate_ids() sample identically.
PROMPT_IN_REPEAT_HISTORY = True


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class Timings:
    """What one call cost; the server returns it as `timings`, bench --speculative reads it."""

    n_prompt: int = 0            # prompt tokens
    n_reused: int = 0            # of them, taken from the cache (prefix reuse)
    prefill_s: float = 0.0       # evaluating the rest of the prompt, to the first logits
    n_generated: int = 0         # tokens emitted
    decode_s: float = 0.0        # from the first logits to the last token
    n_drafted: int = 0           # draft tokens verified
    n_accepted: int = 0          # of them, accepted
    n_verify_passes: int = 0     # batched verification forward passes
    finish_reason: str = ""      # "stop" (EOS, stop string, grammar complete) or "length"

    @property
    def prefill_tok_s(self) -> float:
        n = self.n_prompt - self.n_reused
        return n / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.n_generated / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def acceptance(self) -> Optional[float]:
        return self.n_accepted / self.n_drafted if self.n_drafted else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(prefill_tok_s=self.prefill_tok_s, decode_tok_s=self.decode_tok_s,
                 acceptance=self.acceptance)
        return d


@dataclass
class Penalties:
    """OpenAI's additive penalties over the tokens generated so far (not the prompt):
    logit -= presence * [count > 0] + frequency * count. Applied with numpy before the native
    sampler; both 0 (the default) costs nothing."""

    presence: float = 0.0
    frequency: float = 0.0
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.presence != 0.0 or self.frequency != 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        if not self.active or not self.counts:
            return logits
        ids = np.fromiter(self.counts.keys(), dtype=np.int64, count=len(self.counts))
        n = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
        out = logits.copy()
        out[ids] -= self.presence + self.frequency * n
        return out

    def add(self, token: int) -> None:
        if self.active:
            self.counts[token] = self.counts.get(token, 0) + 1


@dataclass
class Step:
    """One emitted token and the logits it was chosen from (before penalties and the mask)."""

    token: int
    logits: np.ndarray


class Session:
    """The KV cache of one Context as a list of token ids, and the loops that extend it."""

    def __init__(self, ctx: Context, tokenizer: Tokenizer) -> None:
        self.ctx = ctx
        self.tokenizer = tokenizer
        self.cached: list[int] = []  # the ids whose keys/values the cache holds, in order
        self.generation = 0  # bumped by every call that moves the cache; stale streams refuse
        # The server's slots share one edgert.server.batcher.DecodeBatcher: forward passes go
        # through it (one at a time; decode steps of several slots in one batched pass).
        self.batcher: Any = None

    @property
    def n_ctx(self) -> int:
        return self.ctx.n_ctx

    def reset(self) -> None:
        self.generation += 1
        self.ctx.reset()
        self.cached = []

    def load(self, path: str) -> None:
        self.generation += 1
        self.ctx.load(path)
        self.cached = self.ctx.tokens

    def check_fits(self, n_prompt: int, context_length: int) -> None:
        if n_prompt == 0:
            raise InvalidArgumentError("the prompt is empty; give at least one token")
        if n_prompt > self.n_ctx:
            raise ContextOverflowError(f"the prompt has n_prompt={n_prompt} tokens but the context "
                                       f"holds n_ctx={self.n_ctx}; shorten the prompt or open the "
                                       f"model with a larger n_ctx (the model was trained on "
                                       f"{context_length})")

    def reuse_prefix(self, ids: Sequence[int]) -> int:
        """Trim the cache to its longest common prefix with ids, keeping at least the last prompt
        token to evaluate (its logits choose the first new token). Returns the kept length."""
        self.generation += 1
        keep = min(common_prefix_len(self.cached, ids), len(ids) - 1, self.ctx.n_past)
        try:
            self.ctx.trim(keep)
        except InvalidArgumentError:
            # keep <= n_past, so only sliding-window layers refuse: their KV rings no longer hold
            # the window of position `keep` (the cache moved on past it). Start over.
            keep = 0
            self.ctx.trim(0)
        self.cached = self.cached[:keep]
        return keep

    def _trim(self, n_keep: int) -> None:
        self.ctx.trim(n_keep)
        del self.cached[n_keep:]

    def _pass(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if self.batcher is None:
            return fn(*args, **kw)
        return self.batcher.run(lambda: fn(*args, **kw))

    # ---- the token loop ------------------------------------------------------------------------
    def steps(self, ids: list[int], max_tokens: int, params: SamplerParams, *,
              constraint: Any = None, draft: Any = None, penalties: Optional[Penalties] = None,
              timings: Optional[Timings] = None,
              should_stop: Optional[Callable[[], bool]] = None) -> Iterator[Step]:
        """Generate after ids, one Step per token. Ends at EOS, after max_tokens tokens, when the
        context is full, when constraint (edgert.structured) completes, or when should_stop()
        turns true (checked once per forward pass: the server's disconnect test). Leaves the cache
        as edgert_generate does: the prompt and the generated tokens (the last one may be
        missing)."""
        timings = timings if timings is not None else Timings()
        penalties = penalties or Penalties()
        timings.n_prompt = len(ids)
        timings.finish_reason = "length"
        if max_tokens == 0:
            return
        if self.batcher is not None:
            self.batcher.enter()
        try:
            yield from self._steps(ids, max_tokens, params, constraint, draft, penalties, timings,
                                   should_stop)
        finally:
            if self.batcher is not None:
                self.batcher.leave()

    def _steps(self, ids: list[int], max_tokens: int, params: SamplerParams, constraint: Any,
               draft: Any, penalties: Penalties, timings: Timings,
               should_stop: Optional[Callable[[], bool]]) -> Iterator[Step]:
        t0 = time.perf_counter()
        keep = self.reuse_prefix(ids)
        timings.n_reused = keep
        generation = self.generation
        logits = self._pass(self.ctx.eval, ids[keep:])
        self.cached = list(ids)
        t1 = time.perf_counter()
        timings.prefill_s = t1 - t0
        eos = set(self.tokenizer.eos_token_ids)
        n_ctx = self.n_ctx
        history = list(ids)  # what a draft source looks at: prompt + generated
        if draft is not None and constraint is None:
            draft.begin(history, params)
        else:
            draft = None  # a grammar's mask is per position; drafts would need its rollback
        rng = np.random.default_rng(params.seed)
        produced = 0
        pending: Optional[tuple[int, np.ndarray]] = None  # chosen by verification, not emitted
        with Sampler(params) as sampler:
            if PROMPT_IN_REPEAT_HISTORY:
                for t in ids:
                    sampler.accept(t)
            try:
                while True:
                    if pending is not None:
                        token, row = pending
                        pending = None
                    else:
                        row = logits
                        mask = constraint.mask() if constraint is not None else None
                        token = sampler.sample(penalties.apply(row), mask)
                    if token in eos:
                        timings.finish_reason = "stop"
                        return
                    sampler.accept(token)
                    penalties.add(token)
                    if constraint is not None:
                        constraint.accept(token)
                    history.append(token)
                    produced += 1
                    timings.n_generated = produced
                    timings.decode_s = time.perf_counter() - t1
                    yield Step(token, row)
                    if generation != self.generation:
                        raise InvalidArgumentError("another call used this cache while this "
                                                   "stream was open; finish or close a stream "
                                                   "before starting the next call")
                    if constraint is not None and constraint.done():
                        timings.finish_reason = "stop"
                        return
                    if produced == max_tokens or len(self.cached) >= n_ctx:
                        return
                    if should_stop is not None and should_stop():
                        timings.finish_reason = "cancelled"
                        return
                    # Room for drafts: the context, and tokens still wanted after this one.
                    room = min(n_ctx - len(self.cached) - 1, max_tokens - produced)
                    drafts = draft.propose(history, room) if draft is not None and room > 0 else None
                    if not drafts:
                        logits = (self.batcher.decode(self.ctx, token) if self.batcher is not None
                                  else self.ctx.eval([token]))
                        self.cached.append(token)
                        continue
                    base = len(self.cached)
                    rows = self._pass(self.ctx.eval, [token, *drafts.tokens], all_logits=True)
                    self.cached.extend([token, *drafts.tokens])
                    timings.n_verify_passes += 1
                    accepted, pending, hit_eos = self._verify(
                        rows, drafts, sampler, params, rng, penalties, eos)
                    timings.n_drafted += len(drafts.tokens)
                    timings.n_accepted += len(accepted) + (1 if hit_eos else 0)
                    draft.feedback(len(drafts.tokens), len(accepted) + (1 if hit_eos else 0))
                    # The cache keeps the sampled token and the accepted drafts; rejected rows go.
                    self._trim(base + 1 + len(accepted))
                    if pending is None and not hit_eos:
                        logits = rows[len(drafts.tokens)]
                    for i, d in enumerate(accepted):
                        history.append(d)
                        produced += 1
                        timings.n_generated = produced
                        timings.decode_s = time.perf_counter() - t1
                        yield Step(d, rows[i])
                        if generation != self.generation:
                            raise InvalidArgumentError("another call used this cache while this "
                                                       "stream was open; finish or close a "
                                                       "stream before starting the next call")
                    if hit_eos:
                        timings.finish_reason = "stop"
                        return
                    if produced == max_tokens:
                        return
            finally:
                timings.decode_s = time.perf_counter() - t1

    @staticmethod
    def _verify(rows: np.ndarray, drafts: Any, sampler: Sampler, params: SamplerParams,
                rng: np.random.Generator, penalties: Penalties,
                eos: set[int]) -> tuple[list[int], Optional[tuple[int, np.ndarray]], bool]:
        """Check drafts against the target's rows (row i: logits after drafts[:i]). Returns the
        accepted drafts, the token chosen at the first rejected position (None when all were
        accepted: the next token comes from the row after the last draft), and whether an
        accepted draft was EOS (generation ends there)."""
        from .speculative import verify_sampled
        accepted: list[int] = []
        greedy = not params.temperature > 0
        for i, d in enumerate(drafts.tokens):
            row = penalties.apply(rows[i])
            if greedy:
                # The plain loop's choice at this position: the same native argmax.
                t = sampler.sample(row)
                ok = t == d
            else:
                p = sampler.probs(row)
                q = drafts.probs[i] if drafts.probs is not None else None
                ok, t = verify_sampled(p, q, d, rng)
            if not ok:
                return accepted, (t, rows[i]), False
            if d in eos:
                return accepted, None, True
            sampler.accept(d)
            penalties.add(d)
            accepted.append(d)
        return accepted, None, False

    # ---- text ----------------------------------------------------------------------------------
    def text_chunks(self, ids: list[int], max_tokens: int, params: SamplerParams,
                    stops: list[str], **kw: Any) -> Iterator[str]:
        """steps() as text: chunks never split a character; generation ends at the first stop
        string (not included)."""
        decoder = self.tokenizer.stream(ids)
        stop_filter = StopStringFilter(stops)
        steps = self.steps(ids, max_tokens, params, **kw)
        timings: Optional[Timings] = kw.get("timings")
        try:
            for step in steps:
                text = stop_filter.push(decoder.step(step.token))
                if text:
                    yield text
                if stop_filter.stopped:
                    if timings is not None:
                        timings.finish_reason = "stop"
                    return
            tail = stop_filter.flush()
            if tail:
                yield tail
        finally:
            steps.close()
