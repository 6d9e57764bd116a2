"""edgert.LLM: the convenience layer — text in, text out — over Model, Context and Sampler.

One LLM owns one context (one conversation) and is not thread-safe; open one LLM per thread, or
share a Model between Contexts with edgert.model. The KV cache is kept between calls: each call
reuses the longest common prefix of token ids with what the cache already holds, so a chat that
grows turn by turn only evaluates the new tokens.
"""
from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .arguments import (INT32_MAX, check_bool, check_int, check_keywords, check_optional_bool, check_stop,
                        check_token_ids)
from .chat_template import ChatTemplate, Message
from .errors import ChatTemplateError, ContextOverflowError, InvalidArgumentError
from .model import Context, ContextParams, Model, ModelInfo, Sampler, SamplerParams, WeightLayout
from .stop_strings import StopStringFilter
from .tokenizer import Tokenizer

# Whether edgert_generate records the prompt in the sampler's repetition history (edgert.h:
# "Record a token (prompt or generated)"). The Python token loop below must do the same, so that
# streaming and generate_ids() sample identically.
_PROMPT_IN_REPEAT_HISTORY = True

_SAMPLING = tuple(f.name for f in fields(SamplerParams))


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LLM:
    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 0, n_threads: int = 0,
                 n_threads_batch: int = 0, kv_type: str = "auto", verify: bool = False,
                 exact: bool = False) -> None:
        # Arguments are checked before the (possibly large) model file is mapped.
        params = ContextParams(n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch,
                               kv_type=kv_type).validate()
        self._model = Model(path, verify=verify, exact=exact)
        try:
            self.tokenizer = Tokenizer.from_metadata(self._model.metadata)
            self._ctx: Context = self._model.new_context(params)
        except BaseException:
            self._model.close()
            raise
        self._cached: list[int] = []  # the ids whose keys/values the cache holds, in order
        self._generation = 0  # bumped by every call that moves the cache; stale streams refuse

    # ---- resources -----------------------------------------------------------------------------
    def close(self) -> None:
        self._ctx.close()
        self._model.close()

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- facts ---------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._model.info

    @property
    def layout(self) -> WeightLayout:
        """The weights' load-time re-layout for this CPU's kernels (its RAM and time)."""
        return self._model.layout

    @property
    def metadata(self) -> dict[str, Any]:
        return self._model.metadata

    @property
    def path(self) -> str:
        return self._model.path

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx

    @property
    def n_cached(self) -> int:
        """Tokens currently held in the KV cache (what the next call can reuse)."""
        return len(self._cached)

    @property
    def context(self) -> Context:
        return self._ctx

    # ---- tokens --------------------------------------------------------------------------------
    def tokenize(self, text: str | bytes, add_bos: Optional[bool] = None) -> list[int]:
        return self.tokenizer.encode(text, add_bos=check_optional_bool("add_bos", add_bos))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(self._check_ids(ids))

    def count_tokens(self, text: str | bytes) -> int:
        return len(self.tokenize(text))

    def _check_ids(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        return check_token_ids("token ids", ids, self.info.vocab_size)

    def _check_fits(self, n_prompt: int) -> None:
        if n_prompt == 0:
            raise InvalidArgumentError("the prompt is empty; give at least one token")
        n_ctx = self.n_ctx
        if n_prompt > n_ctx:
            raise ContextOverflowError(f"the prompt has n_prompt={n_prompt} tokens but the context "
                                       f"holds n_ctx={n_ctx}; shorten the prompt or open the "
                                       f"model with a larger n_ctx (the model was trained on "
                                       f"{self.info.context_length})")

    # ---- cache ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the KV cache; the next call evaluates its prompt from scratch."""
        self._generation += 1
        self._ctx.reset()
        self._cached = []

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Save the conversation's KV cache; load_state() resumes it, here or in another process."""
        self._ctx.save(path)

    def load_state(self, path: str | os.PathLike[str]) -> None:
        self._generation += 1
        self._ctx.load(path)
        self._cached = self._ctx.tokens

    def _reuse_prefix(self, ids: list[int]) -> int:
        """Trim the cache to its longest common prefix with ids, keeping at least the last prompt
        token to evaluate (its logits choose the first new token). Returns the kept length."""
        self._generation += 1
        keep = min(_common_prefix_len(self._cached, ids), len(ids) - 1, self._ctx.n_past)
        self._ctx.trim(keep)
        self._cached = self._cached[:keep]
        return keep

    def logits(self, token_ids: Sequence[int] | np.ndarray, all_positions: bool = False) -> np.ndarray:
        """Logits after token_ids evaluated from an empty cache: float32 [vocab], or
        [n_tokens, vocab] with all_positions."""
        ids = self._check_ids(token_ids)
        all_positions = check_bool("all_positions", all_positions)
        self._check_fits(len(ids))
        self.reset()
        out = self._ctx.eval(ids, all_logits=all_positions)
        self._cached = ids
        assert out is not None
        return out

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, prompt: str | bytes, max_tokens: int = 256, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                 repeat_penalty: float = 1.0, seed: int = 0,
                 stop: Optional[str | Sequence[str]] = None,
                 stream: bool = False) -> str | Iterator[str]:
        """Continue prompt; returns the new text, or an iterator of text chunks with stream=True.
        Generation ends at EOS, after max_tokens tokens, at a stop string (not included) or when
        the context is full."""
        sampling = SamplerParams(temperature, top_k, top_p, min_p, repeat_penalty, seed=seed).validate()
        ids = self.tokenize(prompt)
        return self._text(ids, max_tokens, sampling, stop, stream)

    def generate_ids(self, ids: Sequence[int] | np.ndarray, max_tokens: int = 256,
                     **sampling: Any) -> list[int]:
        """Continue token ids with edgert_generate (the native loop); returns the new ids, EOS
        excluded."""
        prompt = self._check_ids(ids)
        self._check_fits(len(prompt))
        max_tokens = self._check_max_tokens(max_tokens)
        check_keywords("generate_ids()", sampling, _SAMPLING)
        params = SamplerParams(**sampling).validate()
        keep = self._reuse_prefix(prompt)
        out: list[int] = []
        with Sampler(params) as sampler:
            if _PROMPT_IN_REPEAT_HISTORY:
                for t in prompt[:keep]:
                    sampler.accept(t)
            try:
                self._ctx.generate(sampler, prompt[keep:], max_tokens,
                                   self.tokenizer.eos_token_ids, out.append)
            finally:
                self._cached = (prompt + out)[:self._ctx.n_past]
        return out

    def chat(self, messages: Sequence[Message], stream: bool = False,
             **gen: Any) -> str | Iterator[str]:
        """Answer the conversation with the model's chat template; returns the assistant's text
        (or chunks with stream=True). Append it to messages yourself for the next turn."""
        check_keywords("chat()", gen, ("max_tokens", "stop", *_SAMPLING))
        stop = gen.pop("stop", None)
        max_tokens = gen.pop("max_tokens", 256)
        sampling = SamplerParams(**gen).validate()
        ids = self.tokenize(self.render_chat(messages), add_bos=False)
        return self._text(ids, max_tokens, sampling, stop, stream)

    def render_chat(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        source = self.metadata.get("chat_template")
        if not source:
            raise ChatTemplateError("this model file has no chat template; use generate() with a "
                                    "prompt you format yourself, or convert a checkpoint that "
                                    "ships one")
        template = ChatTemplate(source, bos_token=self.tokenizer.bos_token,
                                eos_token=self.tokenizer.eos_token)
        return template.render(messages, add_generation_prompt=check_bool("add_generation_prompt",
                                                                           add_generation_prompt))

    # ---- internals -----------------------------------------------------------------------------
    @staticmethod
    def _check_max_tokens(max_tokens: int) -> int:
        return check_int("max_tokens", max_tokens, 0, INT32_MAX)

    def _text(self, ids: list[int], max_tokens: int, sampling: SamplerParams,
              stop: Optional[str | Sequence[str]], stream: bool) -> str | Iterator[str]:
        # Validate now, so errors surface at the call and not at the first next() of a stream.
        max_tokens = self._check_max_tokens(max_tokens)
        stops = check_stop(stop)
        stream = check_bool("stream", stream)
        self._check_fits(len(ids))
        chunks = self._text_chunks(ids, max_tokens, sampling, stops)
        return chunks if stream else "".join(chunks)

    def _text_chunks(self, ids: list[int], max_tokens: int, params: SamplerParams,
                     stops: list[str]) -> Iterator[str]:
        decoder = self.tokenizer.stream(ids)
        stop_filter = StopStringFilter(stops)
        tokens = self._tokens(ids, max_tokens, params)
        try:
            for token in tokens:
                text = stop_filter.push(decoder.step(token))
                if text:
                    yield text
                if stop_filter.stopped:
                    return
            tail = stop_filter.flush()
            if tail:
                yield tail
        finally:
            tokens.close()

    def _tokens(self, ids: list[int], max_tokens: int, params: SamplerParams) -> Iterator[int]:
        """The token loop of edgert_generate, one token per step so text can stream and the
        caller can stop at any time. Leaves the cache as edgert_generate does: the prompt and
        every generated token but the last one."""
        if max_tokens == 0:
            return
        keep = self._reuse_prefix(ids)
        generation = self._generation
        logits = self._ctx.eval(ids[keep:])
        self._cached = list(ids)
        eos = set(self.tokenizer.eos_token_ids)
        n_ctx = self.n_ctx
        with Sampler(params) as sampler:
            if _PROMPT_IN_REPEAT_HISTORY:
                for t in ids:
                    sampler.accept(t)
            for i in range(max_tokens):
                token = sampler.sample(logits)
                if token in eos:
                    return
                sampler.accept(token)
                yield token
                if generation != self._generation:
                    raise InvalidArgumentError("another call used this LLM's cache while this "
                                               "stream was open; finish or close a stream "
                                               "before starting the next call")
                if i + 1 == max_tokens or len(self._cached) >= n_ctx:
                    return
                logits = self._ctx.eval([token])
                self._cached.append(token)
