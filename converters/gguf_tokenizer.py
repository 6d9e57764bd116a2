"""Turns a GGUF file's `tokenizer.ggml.*` metadata into an equivalent tokenizer.json plus the
BOS/EOS/chat-template facts the edgert metadata carries."""
from __future__ import annotations

from typing import Any

from edgert.errors import UnsupportedModelError

from . import tokenizer_json
from .gguf_reader import GGUFFile


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def tokenizer_metadata(g: GGUFFile) -> dict[str, Any]:
    """The `tokenizer` object of edgert metadata (plus `chat_template`) for a GGUF file."""
    kind = g.get("tokenizer.ggml.model")
    tokens = g.get("tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise UnsupportedModelError(f"{g.path}: the GGUF carries no tokenizer (tokenizer.ggml.model/tokens missing)")
    types = g.get("tokenizer.ggml.token_type")
    types = None if types is None else [int(t) for t in types]
    bos = _opt_int(g.get("tokenizer.ggml.bos_token_id"))
    eos = _opt_int(g.get("tokenizer.ggml.eos_token_id"))
    eot = _opt_int(g.get("tokenizer.ggml.eot_token_id"))
    eom = _opt_int(g.get("tokenizer.ggml.eom_token_id"))  # Llama 3.1's end of a tool-call message
    add_eos = bool(g.get("tokenizer.ggml.add_eos_token", False))
    if kind == "gpt2":
        add_bos = bool(g.get("tokenizer.ggml.add_bos_token", False))
        merges = g.get("tokenizer.ggml.merges")
        if merges is None:
            raise UnsupportedModelError(f"{g.path}: byte-level BPE vocabulary without tokenizer.ggml.merges")
        text = tokenizer_json.byte_level_bpe(tokens, merges, g.get("tokenizer.ggml.pre", "default"), types,
                                             bos_id=bos, eos_id=eos, add_bos=add_bos, add_eos=add_eos)
    elif kind == "llama":
        # llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise
        add_bos = bool(g.get("tokenizer.ggml.add_bos_token", True))
        scores = g.get("tokenizer.ggml.scores")
        if scores is None:
            raise UnsupportedModelError(f"{g.path}: SentencePiece vocabulary without tokenizer.ggml.scores")
        text = tokenizer_json.sentencepiece_bpe(
            tokens, [float(s) for s in scores], types, unk_id=_opt_int(g.get("tokenizer.ggml.unknown_token_id", 0)),
            bos_id=bos, eos_id=eos, add_bos=add_bos, add_eos=add_eos,
            add_prefix_space=bool(g.get("tokenizer.ggml.add_space_prefix", True)),
            # SentencePiece's dummy prefix is added even before a leading space, as llama.cpp does;
            # a Metaspace pre-tokenizer would skip it there (tests/test_tokenizer_parity.py)
            legacy_normalizer=True)
    else:
        raise UnsupportedModelError(f"{g.path}: tokenizer model {kind!r} is not supported "
                                    "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)")
    eos_ids = [i for i in (eos, eot, eom) if i is not None]
    return {
        "json": text,
        "bos_token_id": bos,
        "eos_token_ids": list(dict.fromkeys(eos_ids)),
        "add_bos": add_bos,
        "pad_token_id": _opt_int(g.get("tokenizer.ggml.padding_token_id")),
        "chat_template": g.get("tokenizer.chat_template"),
    }
