"""Structured output: constrain generation to a JSON schema, any JSON object, a Lark or GBNF
grammar, or a regex, with llguidance computing the allowed-token bitmask at each step and the
native sampler applying it (edgert_sampler_sample_masked), so no Python loop ever walks the
vocabulary.

Why llguidance (benchmarks/grammar_mask_cost.py on SmolLM2's 49,152-token vocabulary; README,
"Structured output"): every candidate's mask costs well under 1% of a decode step, so the choice
is made on the rest — llguidance has no dependencies (xgrammar needs torch, transformers and
triton), compiles a schema in milliseconds once the vocabulary is loaded (outlines-core builds a
full index per schema: seconds, 48 s for `{"type": "object"}`), and reads Lark, GBNF, regex and
JSON schema.

llguidance is part of the `edgert[server]` extra; without it a constrained request raises an
InvalidArgumentError that says what to install.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Mapping, Optional

import numpy as np

from .errors import GrammarError, InvalidArgumentError

# JSON output without free whitespace: a model that may emit whitespace between tokens can loop
# on newlines forever; ", " and ": " keep the text as people write it.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

_TOKENIZERS: dict[tuple[int, int], Any] = {}
_TOKENIZERS_LOCK = threading.Lock()


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as e:
        raise InvalidArgumentError(
            "structured output (response_format, grammar, --json-schema) needs llguidance: "
            'pip install "edgert[server]"') from e
    return llguidance


def _tokenizer(tokenizer_json: str, n_vocab: int, eos: int) -> Any:
    """The engine's view of the vocabulary (about 1-2 s to build for 49k tokens), made once per
    tokenizer and shared by every request."""
    key = (hash(tokenizer_json), n_vocab)
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(key)
        if tok is None:
            tok = _llguidance().LLTokenizer(tokenizer_json, n_vocab=n_vocab, eos_token=eos)
            _TOKENIZERS[key] = tok
        return tok


def grammar_source(response_format: Optional[Mapping[str, Any]] = None,
                   grammar: Any = None) -> Optional[str]:
    """The llguidance grammar for an OpenAI `response_format` and/or an edgert `grammar`
    (a GBNF or Lark string, or {"type": "regex"|"lark"|"gbnf"|"json_schema", "value": ...}).
    None when neither constrains the output."""
    ll = None
    if grammar is not None and response_format not in (None, {}) and \
            (response_format or {}).get("type", "text") != "text":
        raise InvalidArgumentError("give either response_format or grammar, not both")
    if response_format is not None:
        if not isinstance(response_format, Mapping):
            raise InvalidArgumentError("response_format must be an object such as "
                                       '{"type": "json_object"}')
        kind = response_format.get("type", "text")
        if kind == "text":
            pass
        elif kind == "json_object":
            ll = _llguidance()
            return ll.LLMatcher.grammar_from_json_schema({"type": "object"}, overrides=_JSON_OPTIONS)
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            if not isinstance(schema, Mapping):
                raise InvalidArgumentError('response_format "json_schema" needs {"json_schema": '
                                           '{"name": ..., "schema": {...}}}')
            ll = _llguidance()
            return ll.LLMatcher.grammar_from_json_schema(dict(schema), overrides=_JSON_OPTIONS)
        else:
            raise InvalidArgumentError(f"response_format type {kind!r} is not supported; use "
                                       "text, json_object or json_schema")
    if grammar is None:
        return None
    ll = _llguidance()
    if isinstance(grammar, str):
        kind, value = ("gbnf" if "::=" in grammar else "lark"), grammar
    elif isinstance(grammar, Mapping) and isinstance(grammar.get("value"), (str, Mapping)):
        kind, value = str(grammar.get("type", "lark")), grammar["value"]
    else:
        raise InvalidArgumentError('grammar must be a GBNF or Lark string, or {"type": '
                                   '"regex"|"lark"|"gbnf"|"json_schema", "value": ...}')
    if kind == "regex" and isinstance(value, str):
        return ll.LLMatcher.grammar_from_regex(value)
    if kind == "lark" and isinstance(value, str):
        return ll.LLMatcher.grammar_from_lark(value)
    if kind == "gbnf" and isinstance(value, str):
        from llguidance.gbnf_to_lark import gbnf_to_lark
        try:
            return ll.LLMatcher.grammar_from_lark(gbnf_to_lark(value))
        except Exception as e:  # the converter raises its own parse errors
            raise GrammarError(f"the GBNF grammar does not parse: {e}") from e
    if kind == "json_schema":
        schema = json.loads(value) if isinstance(value, str) else dict(value)
        return ll.LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_OPTIONS)
    raise InvalidArgumentError(f"grammar type {kind!r} is not supported; use regex, lark, gbnf "
                               "or json_schema")


class Constraint:
    """One generation's grammar state: the mask before each token, then the token."""

    def __init__(self, grammar: str, tokenizer_json: str, n_vocab: int, eos: int) -> None:
        ll = _llguidance()
        tok = _tokenizer(tokenizer_json, n_vocab, eos)
        is_error, messages = ll.LLMatcher.validate_grammar_with_warnings(grammar, tok)
        if is_error:
            raise GrammarError(f"the grammar is invalid: {messages[0] if messages else 'unknown'}")
        self._matcher = ll.LLMatcher(tok, grammar, log_level=0)
        self._check()
        self._mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def _check(self) -> None:
        if self._matcher.is_error():
            raise GrammarError(f"the grammar cannot be continued: {self._matcher.get_error()}")

    def mask(self) -> np.ndarray:
        """The allowed next tokens as bitmask words (EOS included once the grammar may end).
        GrammarError when nothing is allowed: a grammar that cannot be satisfied stops here
        instead of generating forever."""
        self._matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        self._check()
        if not self._mask.any():
            raise GrammarError("the grammar allows no next token: it cannot be satisfied from "
                               "here; check the schema or grammar")
        return self._mask

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(int(token)):
            self._check()
            raise GrammarError(f"token {token} does not continue the grammar")

    def done(self) -> bool:
        """The grammar is complete and allows nothing more (EOS is implied)."""
        return bool(self._matcher.is_stopped())


def constraint_for(metadata: Mapping[str, Any], n_vocab: int,
                   response_format: Optional[Mapping[str, Any]] = None,
                   grammar: Any = None) -> Optional[Constraint]:
    """A Constraint for this request, or None when the output is free text. metadata is the
    model's (its tokenizer.json text is what the engine reads)."""
    source = grammar_source(response_format, grammar)
    if source is None:
        return None
    tok = metadata.get("tokenizer") or {}
    eos_ids = tok.get("eos_token_ids") or []
    if not eos_ids:
        raise InvalidArgumentError("structured output needs a model with an EOS token")
    return Constraint(source, tok["json"], n_vocab, int(eos_ids[0]))
