"""Turns a GGUF file's `tokenizer.ggml.*` metadata into an equivalent tokenizer.json plus the
BOS/EOS/chat-template facts the edgert metadata carries. Every field is checked (type, length,
ids inside the vocabulary, valid UTF-8) before the tokenizers library sees it."""
from __future__ import annotations

from typing import Any

from edgert.errors import UnsupportedModelError

from . import tokenizer_json
from .gguf_reader import GGUFFile
from .source_checks import (bool_field, field_error, float_field, int_field, is_text, list_field,
                            str_field, token_id_field)

_P = "tokenizer.ggml."


def _text_list(g: GGUFFile, key: str, n: int | None = None) -> list[str]:
    value = g.get(key)

    def item(field: str, v: Any) -> str:
        if not is_text(v):
            raise field_error(g.path, field, v, "is not a valid UTF-8 string")
        return v
    out = list_field(g.path, key, value, item)
    if n is not None and len(out) != n:
        raise field_error(g.path, key, f"<{len(out)} items>", f"must have one item per token ({n})")
    return out


def tokenizer_metadata(g: GGUFFile) -> dict[str, Any]:
    """The `tokenizer` object of edgert metadata (plus `chat_template`) for a GGUF file."""
    kind = g.get(_P + "model")
    if kind is None or g.get(_P + "tokens") is None:
        raise UnsupportedModelError(f"{g.path}: the GGUF carries no tokenizer (tokenizer.ggml.model/tokens missing)")
    kind = str_field(g.path, _P + "model", kind)
    tokens = _text_list(g, _P + "tokens")
    if not tokens:
        raise field_error(g.path, _P + "tokens", tokens, "is empty")
    n = len(tokens)
    types = g.get(_P + "token_type")
    if types is not None:
        types = list_field(g.path, _P + "token_type", types, lambda f, v: int_field(g.path, f, v, -(1 << 31), 1 << 31))
        if len(types) != n:
            raise field_error(g.path, _P + "token_type", f"<{len(types)} items>", f"must have one item per token ({n})")
    bos = token_id_field(g.path, _P + "bos_token_id", g.get(_P + "bos_token_id"), n)
    eos = token_id_field(g.path, _P + "eos_token_id", g.get(_P + "eos_token_id"), n)
    eot = token_id_field(g.path, _P + "eot_token_id", g.get(_P + "eot_token_id"), n)
    pad = token_id_field(g.path, _P + "padding_token_id", g.get(_P + "padding_token_id"), n)
    add_eos = bool_field(g.path, _P + "add_eos_token", g.get(_P + "add_eos_token"), default=False)
    if kind == "gpt2":
        add_bos = bool_field(g.path, _P + "add_bos_token", g.get(_P + "add_bos_token"), default=False)
        if g.get(_P + "merges") is None:
            raise UnsupportedModelError(f"{g.path}: byte-level BPE vocabulary without tokenizer.ggml.merges")
        merges = _text_list(g, _P + "merges")
        pre = str_field(g.path, _P + "pre", g.get(_P + "pre"), default="default")
        text = tokenizer_json.byte_level_bpe(tokens, merges, pre, types,
                                             bos_id=bos, eos_id=eos, add_bos=add_bos, add_eos=add_eos)
    elif kind == "llama":
        # llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise
        add_bos = bool_field(g.path, _P + "add_bos_token", g.get(_P + "add_bos_token"), default=True)
        if g.get(_P + "scores") is None:
            raise UnsupportedModelError(f"{g.path}: SentencePiece vocabulary without tokenizer.ggml.scores")
        scores = list_field(g.path, _P + "scores", g.get(_P + "scores"),
                            lambda f, v: float_field(g.path, f, v, -1e30, 1e30))
        if len(scores) != n:
            raise field_error(g.path, _P + "scores", f"<{len(scores)} items>", f"must have one item per token ({n})")
        unk = token_id_field(g.path, _P + "unknown_token_id", g.get(_P + "unknown_token_id", 0), n)
        text = tokenizer_json.sentencepiece_bpe(
            tokens, scores, types, unk_id=unk, bos_id=bos, eos_id=eos, add_bos=add_bos, add_eos=add_eos,
            add_prefix_space=bool_field(g.path, _P + "add_space_prefix", g.get(_P + "add_space_prefix"),
                                        default=True),
            # SentencePiece's dummy prefix is added even before a leading space, as llama.cpp does;
            # a Metaspace pre-tokenizer would skip it there (tests/test_tokenizer_parity.py)
            legacy_normalizer=True)
    else:
        raise UnsupportedModelError(f"{g.path}: tokenizer model {kind!r} is not supported "
                                    "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)")
    template = g.get("tokenizer.chat_template")
    eos_ids = [i for i in (eos, eot) if i is not None]
    return {
        "json": text,
        "bos_token_id": bos,
        "eos_token_ids": list(dict.fromkeys(eos_ids)),
        "add_bos": add_bos,
        "pad_token_id": pad,
        "chat_template": None if template is None else str_field(g.path, "tokenizer.chat_template", template),
    }
