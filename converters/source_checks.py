"""Checks of every value a converter takes from a source file, before the value is used.

A source file (GGUF, config.json, a safetensors header, tokenizer.json, a llama2.c header) is
untrusted input: a field can hold the wrong type, NaN, a negative count or 2**31 layers. Readers
take each field through one of the typed readers below (int_field, float_field, str_field, ...),
which raise ModelFormatError naming the file, the field and the value; the hyper-parameters then
go through checked_hparams (sane ranges, the same for every source format, and consistency), and
the finished SourceModel through check_source_model (every tensor the registry requires present
with the shape the hyper-parameters imply; token ids inside the vocabulary) before one byte is
written. Nothing is sized or looped over from a file's number until it has passed here.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError
from edgert.tokenizer import load_tokenizer_json

from .llama_tensor_names import NAMES

_MISSING = object()

# Sane ranges of the hyper-parameters, for every source format. They bound what a file can make
# the converter allocate or loop over (names per layer, rope factor tables) and are far above any
# released llama-family model (Llama 3.1 405B: 126 layers, hidden 16384, FFN 53248, vocab 128256).
HPARAM_LIMITS: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 1 << 24),
    "hidden_size": (1, 1 << 16),
    "intermediate_size": (1, 1 << 18),
    "num_layers": (1, 1024),
    "num_heads": (1, 1024),
    "num_kv_heads": (1, 1024),
    "head_dim": (2, 4096),
    "context_length": (1, 1 << 24),
}
MAX_ROPE_THETA = 1e12


def show(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: its repr, cut to `limit` characters."""
    try:
        text = repr(value)
    except Exception:  # a repr is only for the message; never let it fail the check
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def field_error(where: Any, field: str, value: Any, expected: str) -> ModelFormatError:
    return ModelFormatError(f"{where}: {field} = {show(value)} {expected}")


def int_field(where: Any, field: str, value: Any, lo: int, hi: int, default: Any = _MISSING) -> int:
    """An integer in [lo, hi]; a float is accepted only when it is a whole number (JSON writers
    sometimes write 2048.0). `default` is returned for a missing (None) value when given."""
    if value is None and default is not _MISSING:
        return default
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise field_error(where, field, value, f"must be an integer in [{lo}, {hi}]")
    if isinstance(value, Integral):
        out = int(value)
    elif isinstance(value, Real) and math.isfinite(float(value)) and float(value).is_integer():
        out = int(value)
    else:
        raise field_error(where, field, value, f"must be an integer in [{lo}, {hi}]")
    if not lo <= out <= hi:
        raise field_error(where, field, value, f"is outside [{lo}, {hi}]")
    return out


def float_field(where: Any, field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                default: Any = _MISSING) -> float:
    """A finite number in [lo, hi] (or (lo, hi] with lo_open)."""
    if value is None and default is not _MISSING:
        return default
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise field_error(where, field, value, "must be a finite number")
    out = float(value)
    if (out <= lo if lo_open else out < lo) or out > hi:
        raise field_error(where, field, value, f"is outside {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return out


def bool_field(where: Any, field: str, value: Any, default: Any = _MISSING) -> bool:
    if value is None and default is not _MISSING:
        return default
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral) and int(value) in (0, 1):
        return bool(value)
    raise field_error(where, field, value, "must be true or false")


def is_text(value: Any) -> bool:
    """A str that is valid Unicode (no lone surrogates, which invalid UTF-8 read with
    surrogateescape produces and which no JSON or tokenizer can carry)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def str_field(where: Any, field: str, value: Any, choices: Sequence[str] | None = None,
              default: Any = _MISSING) -> str:
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, str):
        raise field_error(where, field, value, "must be a string")
    if not is_text(value):
        raise field_error(where, field, value, "is not valid UTF-8 text")
    if choices is not None and value not in choices:
        raise field_error(where, field, value, f"is not one of {', '.join(map(repr, choices))}")
    return value


def list_field(where: Any, field: str, value: Any, item: Callable[[str, Any], Any],
               max_len: int = 1 << 24) -> list:
    """A list (JSON array, GGUF array) whose items each pass `item(field_of_item, value)`."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise field_error(where, field, value, "must be a list")
    if len(value) > max_len:
        raise field_error(where, field, f"<{len(value)} items>", f"has more than {max_len} items")
    return [item(f"{field}[{i}]", v) for i, v in enumerate(value)]


def dict_field(where: Any, field: str, value: Any, default: Any = _MISSING) -> dict:
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, dict):
        raise field_error(where, field, value, "must be an object")
    return value


def token_id_field(where: Any, field: str, value: Any, n_vocab: int, default: Any = None) -> int | None:
    """A token id inside a vocabulary of n_vocab tokens (None when missing)."""
    if value is None:
        return default
    return int_field(where, field, value, 0, n_vocab - 1)


def checked_hparams(where: Any, fields: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The `hparams` object of the metadata from {hparam: (source field name, raw value)}: every
    value typed and in range, and consistent with the others."""
    hp: dict[str, Any] = {}
    for name, (field, value) in fields.items():
        if name in HPARAM_LIMITS:
            hp[name] = int_field(where, field, value, *HPARAM_LIMITS[name])
        elif name == "rope_theta":
            hp[name] = float_field(where, field, value, 0.0, MAX_ROPE_THETA, lo_open=True)
        elif name == "rms_norm_eps":
            hp[name] = float_field(where, field, value, 0.0, 1.0, lo_open=True)
        elif name in ("tie_embeddings", "attention_bias"):
            hp[name] = bool_field(where, field, value)
        else:
            raise ValueError(f"unknown hyper-parameter {name}")
    heads, kv_heads = hp["num_heads"], hp["num_kv_heads"]
    if kv_heads > heads or heads % kv_heads:
        field, value = fields["num_kv_heads"]
        raise field_error(where, field, value, f"must divide the {heads} attention heads")
    if hp["head_dim"] % 2:
        field, value = fields["head_dim"]
        raise field_error(where, field, value, "must be even (rotary embeddings rotate pairs)")
    return hp


def expected_shapes(hp: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Registry name -> the shape the hyper-parameters imply (outermost first), for the tensors
    whose shape is fixed by them."""
    d, f, v = hp["hidden_size"], hp["intermediate_size"], hp["vocab_size"]
    q, kv = hp["num_heads"] * hp["head_dim"], hp["num_kv_heads"] * hp["head_dim"]
    by_id = {"TOKEN_EMBD": (v, d), "OUTPUT": (v, d), "OUTPUT_NORM": (d,), "ROPE_FREQS": (hp["head_dim"] // 2,),
             "ATTN_NORM": (d,), "FFN_NORM": (d,), "ATTN_Q": (q, d), "ATTN_K": (kv, d), "ATTN_V": (kv, d),
             "ATTN_OUTPUT": (d, q), "ATTN_Q_BIAS": (q,), "ATTN_K_BIAS": (kv,), "ATTN_V_BIAS": (kv,),
             "FFN_GATE": (f, d), "FFN_UP": (f, d), "FFN_DOWN": (d, f)}
    out = {}
    for id_, shape in by_id.items():
        t = NAMES.get(id_)
        if t is None:
            continue
        for name in ([t.format(i) for i in range(hp["num_layers"])] if t.per_layer else [t.format()]):
            out[name] = shape
    return out


def check_source_model(where: Any, model: Any) -> None:
    """Refuse a SourceModel the runtime could not load, before anything is written: tensors not in
    the registry or for layers past num_layers, required tensors missing, shapes that disagree
    with the hyper-parameters, token ids outside the vocabulary, text that is not valid UTF-8."""
    hp = model.hparams
    n_layers = hp["num_layers"]
    known: dict[str, Any] = {}
    for t in NAMES.values():
        for name in ([t.format(i) for i in range(n_layers)] if t.per_layer else [t.format()]):
            known[name] = t
    names = [t.name for t in model.tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ModelFormatError(f"{where}: tensor {dup} appears twice")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnsupportedModelError(f"{where}: tensors {unknown[:5]} are not llama tensors of a "
                               f"{n_layers}-layer model (num_layers = {n_layers})")
    present = set(names)
    optional_ids = {"OUTPUT"} if hp["tie_embeddings"] else set()
    for name, t in known.items():
        if not t.optional and t.id not in optional_ids and name not in present:
            raise ModelFormatError(f"{where}: tensor {name} is missing (num_layers = {n_layers})")
    if not hp["tie_embeddings"] and "output.weight" not in present:
        raise ModelFormatError(f"{where}: the model is not tied but has no output.weight")
    biases = [n for n, t in known.items() if t.id.endswith("_BIAS") and t.per_layer]
    have = [n for n in biases if n in present]
    if have and len(have) != len(biases) or bool(have) != bool(hp["attention_bias"]):
        missing = sorted(set(biases) - set(have))[:3]
        raise ModelFormatError(f"{where}: attention biases must be present in every layer or in none "
                               f"(attention_bias = {hp['attention_bias']}; missing {missing})")
    shapes = expected_shapes(hp)
    for t in model.tensors:
        shape = tuple(t.shape)
        if not 1 <= len(shape) <= 4 or not all(isinstance(s, int) and 1 <= s < 1 << 40 for s in shape):
            raise ModelFormatError(f"{where}: tensor {t.name} has shape {show(shape)}; dims must be 1..2**40")
        want = shapes.get(t.name)
        if want is not None and shape != want:
            raise ModelFormatError(f"{where}: tensor {t.name} has shape {shape}, but the hyper-parameters "
                                   f"({', '.join(f'{k}={v}' for k, v in hp.items() if k in HPARAM_LIMITS)}) "
                                   f"imply {want}")
    tok = model.tokenizer
    n_vocab = hp["vocab_size"]
    for key in ("bos_token_id", "pad_token_id"):
        token_id_field(where, f"tokenizer {key}", tok.get(key), n_vocab)
    list_field(where, "tokenizer eos_token_ids", tok.get("eos_token_ids", []),
               lambda f, v: token_id_field(where, f, v, n_vocab))
    bool_field(where, "tokenizer add_bos", tok.get("add_bos"))
    str_field(where, "tokenizer.json", tok.get("json"))
    if model.chat_template is not None:
        str_field(where, "chat template", model.chat_template)
    str_field(where, "model name", model.name)
    # loads and probes it (edgert.tokenizer): a tokenizer the runtime would refuse is refused now
    load_tokenizer_json(tok["json"], f"{where}: the tokenizer")
