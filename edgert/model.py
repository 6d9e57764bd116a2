"""The object layer over the binding: Model (weights), Context (one conversation's KV cache) and
Sampler, each a context manager that frees its native object on exit.

Assumes the compiled module edgert._edgert (built by setup.py from native/). Everything here maps
one to one onto edgert.h; text, tokenizers and chat live in edgert.llm.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from . import _edgert
from .arguments import (INT32_MAX, MAX_THREADS, UINT64_MAX, check_bool, check_float, check_int, check_path,
                        check_token_ids)
from .errors import InvalidArgumentError, UnsupportedModelError

KV_TYPES: dict[str, int] = {
    "auto": _edgert.KV_AUTO,  # int8 where the head size allows it (measured best), else f16
    "f32": _edgert.KV_F32,
    "f16": _edgert.KV_F16,
    "q8": _edgert.KV_Q8,
    "q4": _edgert.KV_Q4,
}

TokenIds = Sequence[int] | np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    """edgert_model_info: the hyper-parameters and sizes the runtime read from the file."""

    architecture: str
    name: str
    format_version: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    bos_token_id: int
    eos_token_id: int
    rope_theta: float
    rms_norm_eps: float
    n_params: int
    file_size: int
    weights_size: int


@dataclass(frozen=True)
class WeightLayout:
    """edgert_model_layout: the copy of the weights re-laid out at load for this CPU's kernels."""

    isa: str  # "" when no weight was re-laid out
    bytes: int
    seconds: float


@dataclass
class ContextParams:
    """edgert_context_params. Zeros mean the runtime's defaults (see edgert.h)."""

    n_ctx: int = 0
    n_threads: int = 0
    n_threads_batch: int = 0
    n_batch: int = 0
    kv_type: str = "auto"
    memory_budget: int = 0
    kv_type_k: Optional[str] = None  # override kv_type for K or V alone (K is the more sensitive)
    kv_type_v: Optional[str] = None

    def validate(self) -> "ContextParams":
        """Every field typed and in edgert.h's range (0 picks the default), or InvalidArgumentError."""
        for field in ("n_ctx", "n_batch"):
            check_int(field, getattr(self, field), 0, INT32_MAX)
        for field in ("n_threads", "n_threads_batch"):
            check_int(field, getattr(self, field), 0, MAX_THREADS)
        check_int("memory_budget", self.memory_budget, 0, UINT64_MAX)
        for field in ("kv_type", "kv_type_k", "kv_type_v"):
            kind = getattr(self, field)
            if kind is None and field != "kv_type":
                continue
            if not isinstance(kind, str):
                raise InvalidArgumentError(f"{field} must be one of {', '.join(KV_TYPES)}, got {kind!r}")
            if kind not in KV_TYPES:
                raise UnsupportedModelError(
                    f"unknown KV-cache type {kind!r}; use one of {', '.join(KV_TYPES)}")
        return self

    def to_native(self) -> Any:
        self.validate()
        k = self.kv_type_k or self.kv_type
        v = self.kv_type_v or self.kv_type
        p = _edgert.ContextParams()
        p.n_ctx, p.n_threads = int(self.n_ctx), int(self.n_threads)
        p.n_threads_batch, p.n_batch = int(self.n_threads_batch), int(self.n_batch)
        p.kv_type_k, p.kv_type_v = KV_TYPES[k], KV_TYPES[v]
        p.memory_budget = int(self.memory_budget)
        return p


@dataclass
class SamplerParams:
    """edgert_sampler_params. temperature <= 0 is greedy decoding."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int = 0

    def validate(self) -> "SamplerParams":
        """Every field typed and in range, or InvalidArgumentError saying the range. The one place
        sampling arguments are checked, for the Python API, the CLI and the server alike."""
        check_float("temperature", self.temperature, 0.0, 1e6)
        check_int("top_k", self.top_k, 0, INT32_MAX)
        check_float("top_p", self.top_p, 0.0, 1.0)
        check_float("min_p", self.min_p, 0.0, 1.0)
        check_float("repeat_penalty", self.repeat_penalty, 0.0, 1e6, lo_open=True)
        check_int("repeat_last_n", self.repeat_last_n, 0, INT32_MAX)
        check_int("seed", self.seed, 0, UINT64_MAX)
        return self

    def to_native(self) -> Any:
        self.validate()
        p = _edgert.SamplerParams()
        for key, value in asdict(self).items():
            setattr(p, key, int(value) if isinstance(value, (int, np.integer)) else float(value))
        return p


class Model:
    """Weights mapped read-only from an .edgt file; share one Model between many Contexts."""

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = False,
                 exact: bool = False) -> None:
        params = _edgert.ModelParams()
        params.verify_checksums = 1 if check_bool("verify", verify) else 0
        # exact: quantized weights take f32 activations (no int8 rounding); slower, and the
        # precision that matches PyTorch on the same weights.
        params.exact_matmul = 1 if check_bool("exact", exact) else 0
        self._handle: Any = None
        self.path = check_path("path", path)
        self._handle: Any = _edgert.model_load(self.path, params)
        self.info = ModelInfo(**_edgert.model_get_info(self._handle))
        self.layout = WeightLayout(**_edgert.model_get_layout(self._handle))
        self.metadata: dict[str, Any] = json.loads(_edgert.model_metadata_json(self._handle))

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise InvalidArgumentError("the model is closed; open it again")
        return self._handle

    def new_context(self, params: Optional[ContextParams] = None) -> "Context":
        if params is not None and not isinstance(params, ContextParams):
            raise InvalidArgumentError(f"params must be a ContextParams, got {type(params).__name__}")
        return Context(self, params or ContextParams())

    def close(self) -> None:
        # Contexts hold their own reference to the native weights, so closing here is always safe.
        if self._handle is not None:
            _edgert.model_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Context:
    """One conversation: the KV cache, scratch buffers and thread pool."""

    def __init__(self, model: Model, params: ContextParams) -> None:
        self._handle: Any = None
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be an edgert.model.Model, got {type(model).__name__}")
        self.vocab_size = model.info.vocab_size
        self._handle = _edgert.context_new(model.handle, params.to_native())

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise InvalidArgumentError("the context is closed; create a new one")
        return self._handle

    @property
    def n_past(self) -> int:
        return _edgert.context_n_past(self.handle)

    @property
    def n_ctx(self) -> int:
        return _edgert.context_n_ctx(self.handle)

    @property
    def kv_bytes_per_token(self) -> int:
        return _edgert.context_kv_bytes_per_token(self.handle)

    @property
    def kv_bytes_total(self) -> int:
        return _edgert.context_kv_bytes_total(self.handle)

    def trim(self, n_keep: int) -> None:
        _edgert.context_trim(self.handle, check_int("n_keep", n_keep, 0, self.n_past))

    def reset(self) -> None:
        self.trim(0)

    @property
    def tokens(self) -> list[int]:
        """The ids whose keys/values the cache holds, in position order."""
        return _edgert.context_tokens(self.handle)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the KV cache and its token ids to path (edgert_context_save)."""
        _edgert.context_save(self.handle, check_path("path", path))

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace this context's state with one saved by save() from the same model."""
        _edgert.context_load(self.handle, check_path("path", path))

    def eval(self, tokens: TokenIds, *, logits: bool = True,
             all_logits: bool = False) -> Optional[np.ndarray]:
        """Append tokens to the cache; return the last position's logits [vocab], all positions'
        [n_tokens, vocab] with all_logits, or None with logits=False (prefill without output)."""
        ids = np.asarray(check_token_ids("tokens", tokens, self.vocab_size), dtype=np.int64)
        all_logits = check_bool("all_logits", all_logits)
        if not check_bool("logits", logits):
            _edgert.eval(self.handle, ids, None, False)
            return None
        shape = (len(ids), self.vocab_size) if all_logits else (self.vocab_size,)
        out = np.empty(shape, dtype=np.float32)
        _edgert.eval(self.handle, ids, out, all_logits)
        return out

    def generate(self, sampler: "Sampler", prompt: TokenIds, max_new_tokens: int,
                 stop_tokens: Iterable[int] = (),
                 callback: Optional[Callable[[int], Optional[bool]]] = None) -> int:
        """edgert_generate: returns how many tokens were generated; callback returning True stops."""
        if not isinstance(sampler, Sampler):
            raise InvalidArgumentError(f"sampler must be an edgert.model.Sampler, got {type(sampler).__name__}")
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(f"callback must be callable or None, got {type(callback).__name__}")
        ids = np.asarray(check_token_ids("prompt", prompt, self.vocab_size), dtype=np.int64)
        stops = check_token_ids("stop_tokens", stop_tokens)
        return _edgert.generate(self.handle, sampler.handle, ids,
                                check_int("max_new_tokens", max_new_tokens, 0, INT32_MAX), stops, callback)

    def close(self) -> None:
        if self._handle is not None:
            _edgert.context_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sampler:
    """Turns logits into tokens; holds the RNG and the repetition history."""

    def __init__(self, params: Optional[SamplerParams] = None) -> None:
        self._handle: Any = None
        if params is not None and not isinstance(params, SamplerParams):
            raise InvalidArgumentError(f"params must be a SamplerParams, got {type(params).__name__}")
        self.params = params or SamplerParams()
        self._handle = _edgert.sampler_new(self.params.to_native())

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise InvalidArgumentError("the sampler is closed; create a new one")
        return self._handle

    def sample(self, logits: np.ndarray) -> int:
        if not isinstance(logits, np.ndarray) or logits.ndim != 1 or logits.dtype.kind != "f" or not logits.size:
            raise InvalidArgumentError("logits must be a non-empty 1-D float numpy array")
        if logits.size > INT32_MAX:
            raise InvalidArgumentError(f"logits has {logits.size} entries, more than {INT32_MAX}")
        return _edgert.sampler_sample(self.handle, logits)

    def accept(self, token: int) -> None:
        _edgert.sampler_accept(self.handle, check_token_ids("token", [token])[0])

    def reset(self) -> None:
        _edgert.sampler_reset(self.handle)

    def close(self) -> None:
        if self._handle is not None:
            _edgert.sampler_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
