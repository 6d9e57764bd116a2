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

from .arguments import (INT32_MAX, check_bool, check_float, check_int, check_keywords, check_optional_bool, check_stop,
                        check_token_ids)
from .chat_template import ChatTemplate, Message
from .errors import ChatTemplateError, InvalidArgumentError
from .model import Context, ContextParams, Model, ModelInfo, Sampler, SamplerParams, WeightLayout
from .session import PROMPT_IN_REPEAT_HISTORY, Penalties, Session, Timings
from .tokenizer import Tokenizer

# speculative= values (edgert.speculative.draft_for): "auto" uses the draft model when one is
# given, else prompt lookup for greedy requests (identical tokens, faster on text that copies its
# input); sampled requests without a draft model stay on the plain loop so a seed reproduces
# generate_ids().
SPECULATIVE_MODES = ("auto", "lookup", "draft", "off")

_SAMPLING = tuple(f.name for f in fields(SamplerParams))


class LLM:
    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 0, n_threads: int = 0,
                 n_threads_batch: int = 0, kv_type: str = "auto", verify: bool = False,
                 exact: bool = False, n_batch: int = 0,
                 draft: Optional[str | os.PathLike[str] | Model] = None,
                 speculative: str = "auto") -> None:
        # Arguments are checked before the (possibly large) model file is mapped.
        params = ContextParams(n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch,
                               kv_type=kv_type, n_batch=n_batch).validate()
        speculative = self._check_speculative(speculative)
        self._model = Model(path, verify=verify, exact=exact)
        self._draft: Any = None
        try:
            self.tokenizer = Tokenizer.from_metadata(self._model.metadata,
                                                     native=self._model.native_tokenizer())
            self._ctx: Context = self._model.new_context(params)
            self.speculative = speculative
            if draft is not None:
                from .speculative import DraftModel
                kw = dict(n_ctx=self._ctx.n_ctx, n_threads=n_threads, kv_type=kv_type)
                self._draft = (DraftModel(draft, self.info.vocab_size, **kw)  # type: ignore[arg-type]
                               if isinstance(draft, Model) else
                               DraftModel.open(os.fspath(draft), self.info.vocab_size, **kw))
        except BaseException:
            self.close()
            raise
        self._session = Session(self._ctx, self.tokenizer)
        self.last_timings = Timings()  # what the latest generation cost (tok/s, acceptance)

    @staticmethod
    def _check_speculative(mode: Any) -> str:
        if mode is False or mode is None:
            return "off"
        if mode is True:
            return "auto"
        if mode not in SPECULATIVE_MODES:
            raise InvalidArgumentError(f"speculative={mode!r}; use one of "
                                       f"{', '.join(SPECULATIVE_MODES)}")
        return str(mode)

    # ---- resources -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._draft is not None:
            self._draft.close()
            self._draft = None
        if hasattr(self, "_ctx"):
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
        return len(self._session.cached)

    @property
    def _cached(self) -> list[int]:
        return self._session.cached

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
        self._session.check_fits(n_prompt, self.info.context_length)

    # ---- cache ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the KV cache; the next call evaluates its prompt from scratch."""
        self._session.reset()

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Save the conversation's KV cache; load_state() resumes it, here or in another process."""
        self._ctx.save(path)

    def load_state(self, path: str | os.PathLike[str]) -> None:
        self._session.load(os.fspath(path))

    def _reuse_prefix(self, ids: list[int]) -> int:
        return self._session.reuse_prefix(ids)

    def logits(self, token_ids: Sequence[int] | np.ndarray, all_positions: bool = False) -> np.ndarray:
        """Logits after token_ids evaluated from an empty cache: float32 [vocab], or
        [n_tokens, vocab] with all_positions."""
        ids = self._check_ids(token_ids)
        all_positions = check_bool("all_positions", all_positions)
        self._check_fits(len(ids))
        self.reset()
        out = self._ctx.eval(ids, all_logits=all_positions)
        self._session.cached = ids
        assert out is not None
        return out

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, prompt: str | bytes, max_tokens: int = 256, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                 repeat_penalty: float = 1.0, seed: int = 0,
                 stop: Optional[str | Sequence[str]] = None,
                 stream: bool = False, **extra: Any) -> str | Iterator[str]:
        """Continue prompt; returns the new text, or an iterator of text chunks with stream=True.
        Generation ends at EOS, after max_tokens tokens, at a stop string (not included) or when
        the context is full. extra: response_format / grammar (structured output),
        presence_penalty / frequency_penalty, speculative (overrides the LLM's mode)."""
        check_keywords("generate()", extra, self._EXTRA)
        sampling = SamplerParams(temperature, top_k, top_p, min_p, repeat_penalty, seed=seed).validate()
        ids = self.tokenize(prompt)
        return self._text(ids, max_tokens, sampling, stop, stream, **extra)

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
            if PROMPT_IN_REPEAT_HISTORY:
                for t in prompt[:keep]:
                    sampler.accept(t)
            try:
                self._ctx.generate(sampler, prompt[keep:], max_tokens,
                                   self.tokenizer.eos_token_ids, out.append)
            finally:
                self._session.cached = (prompt + out)[:self._ctx.n_past]
        return out

    def chat(self, messages: Sequence[Message], stream: bool = False,
             **gen: Any) -> str | Iterator[str]:
        """Answer the conversation with the model's chat template; returns the assistant's text
        (or chunks with stream=True). Append it to messages yourself for the next turn."""
        check_keywords("chat()", gen, ("max_tokens", "stop", *_SAMPLING, *self._EXTRA))
        stop = gen.pop("stop", None)
        max_tokens = gen.pop("max_tokens", 256)
        extra = {k: gen.pop(k) for k in self._EXTRA if k in gen}
        sampling = SamplerParams(**gen).validate()
        ids = self.tokenize(self.render_chat(messages), add_bos=False)
        return self._text(ids, max_tokens, sampling, stop, stream, **extra)

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
    _EXTRA = ("response_format", "grammar", "presence_penalty", "frequency_penalty", "speculative")

    @staticmethod
    def _check_max_tokens(max_tokens: int) -> int:
        return check_int("max_tokens", max_tokens, 0, INT32_MAX)

    def draft_source(self, params: SamplerParams, mode: Optional[str] = None) -> Any:
        """The draft source a request with these parameters uses under mode (default: the LLM's
        own; edgert.speculative.draft_for), or None for the plain loop."""
        from .speculative import draft_for
        return draft_for(self._check_speculative(self.speculative if mode is None else mode),
                         params, self._draft)

    def _text(self, ids: list[int], max_tokens: int, sampling: SamplerParams,
              stop: Optional[str | Sequence[str]], stream: bool,
              response_format: Any = None, grammar: Any = None, presence_penalty: float = 0.0,
              frequency_penalty: float = 0.0, speculative: Optional[str] = None) -> str | Iterator[str]:
        # Validate now, so errors surface at the call and not at the first next() of a stream.
        max_tokens = self._check_max_tokens(max_tokens)
        stops = check_stop(stop)
        stream = check_bool("stream", stream)
        self._check_fits(len(ids))
        from .structured import constraint_for
        constraint = constraint_for(self.metadata, self.info.vocab_size, response_format, grammar)
        penalties = Penalties(check_float("presence_penalty", presence_penalty, -2.0, 2.0),
                              check_float("frequency_penalty", frequency_penalty, -2.0, 2.0))
        self.last_timings = Timings()
        chunks = self._session.text_chunks(
            ids, max_tokens, sampling, stops, constraint=constraint, penalties=penalties,
            draft=self.draft_source(sampling, speculative), timings=self.last_timings)
        return chunks if stream else "".join(chunks)

    def _tokens(self, ids: list[int], max_tokens: int, params: SamplerParams) -> Iterator[int]:
        """The plain token loop (no speculation), one token per step."""
        for step in self._session.steps(ids, max_tokens, params):
            yield step.token
