"""Save and load a context's KV-cache state (edgert_context_save / _load / _tokens).

Functions over the low-level binding's context handle (`edgert.model.Context.handle`, or the
Context itself), for code below the LLM layer; `LLM.save_state` / `load_state` are the
convenience form. The file holds the model's identity, the KV types, the token ids and the cache
rows; loading refuses another model, other KV types, or a damaged file with a typed error
(InvalidArgumentError, ModelFormatError, ModelVersionError, ContextOverflowError) and leaves the
context as it was.
"""
from __future__ import annotations

import os
from typing import Any

from . import _edgert


def _handle(ctx: Any) -> Any:
    return ctx.handle if hasattr(ctx, "handle") else ctx


def save(ctx: Any, path: str | os.PathLike[str]) -> None:
    """Write the context's state to path (atomically: a partial file never has that name)."""
    _edgert.context_save(_handle(ctx), os.fspath(path))


def load(ctx: Any, path: str | os.PathLike[str]) -> list[int]:
    """Replace the context's state with the saved one; returns the token ids it now holds."""
    handle = _handle(ctx)
    _edgert.context_load(handle, os.fspath(path))
    return list(_edgert.context_tokens(handle))


def tokens(ctx: Any) -> list[int]:
    """The token ids whose keys/values the context's cache holds, in position order."""
    return list(_edgert.context_tokens(_handle(ctx)))
