"""Checks of the arguments callers pass to the object layer (edgert.model) and everything above it
(edgert.llm, the CLI, the server): each takes the name the caller knows, the value and its
allowed range, and returns the value as the native layer wants it or raises InvalidArgumentError /
TokenIdError saying what is allowed. The ranges are edgert.h's: counts and ids are int32, the
seed and the memory budget uint64. Without these, pybind11 answers an out-of-range int with a
TypeError listing C++ signatures, and numpy silently truncates 1.7 to token 1."""
from __future__ import annotations

import math
import os
from numbers import Integral, Real
from typing import Any, Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError, TokenIdError

INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1
MAX_THREADS = 1024


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise InvalidArgumentError(f"{name} must be an integer in [{lo}, {hi}], got {_show(value)}")
    value = int(value)
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} = {value} is outside the allowed range [{lo}, {hi}]")
    return value


def check_float(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise InvalidArgumentError(f"{name} must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                                   f"got {_show(value)}")
    value = float(value)
    if (value <= lo if lo_open else value < lo) or value > hi:
        raise InvalidArgumentError(f"{name} = {value:g} is outside the allowed range "
                                   f"{'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return value


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral) and int(value) in (0, 1):
        return bool(value)
    raise InvalidArgumentError(f"{name} must be True or False, got {_show(value)}")


def check_optional_bool(name: str, value: Any) -> Optional[bool]:
    return None if value is None else check_bool(name, value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, got {_show(value)}")
    return value


def check_path(name: str, value: Any) -> str:
    try:
        path = os.fspath(value)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be a path (str or os.PathLike), got {_show(value)}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path or "\0" in path:
        raise InvalidArgumentError(f"{name} must be a non-empty path without NUL characters")
    return path


def check_token_ids(name: str, ids: Any, vocab_size: Optional[int] = None) -> list[int]:
    """A sequence (or 1-D integer array) of token ids as ints; floats are refused, not
    truncated. With vocab_size, each id must lie in [0, vocab_size)."""
    if isinstance(ids, (str, bytes)):
        raise InvalidArgumentError(f"{name} must be a sequence of token ids (ints), not text; "
                                   "tokenize() turns text into ids")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise InvalidArgumentError(f"{name} must be a 1-D integer array, got {ids.ndim}-D {ids.dtype}")
        values: Sequence[Any] = ids.tolist()
    else:
        try:
            values = list(ids)
        except TypeError:
            raise InvalidArgumentError(f"{name} must be a sequence of token ids, got {_show(ids)}") from None
    hi = (vocab_size if vocab_size is not None else INT32_MAX + 1) - 1
    out = []
    for pos, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, Integral):
            raise InvalidArgumentError(f"{name}[{pos}] = {_show(v)} is not an integer token id")
        v = int(v)
        if not 0 <= v <= hi:
            raise TokenIdError(f"token id {v} at position {pos} is outside [0, {hi + 1}); "
                               "use ids from this model's tokenizer")
        out.append(v)
    return out


def check_stop(stop: Any) -> list[str]:
    """None, a string, or a sequence of strings."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, (bytes, bytearray)) or not isinstance(stop, Sequence):
        raise InvalidArgumentError(f"stop must be a string or a list of strings, got {_show(stop)}")
    for i, s in enumerate(stop):
        if not isinstance(s, str):
            raise InvalidArgumentError(f"stop[{i}] must be a string, got {_show(s)}")
    return list(stop)


def check_keywords(where: str, given: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InvalidArgumentError(f"{where} got unknown argument(s) {', '.join(unknown)}; "
                                   f"allowed: {', '.join(allowed)}")
