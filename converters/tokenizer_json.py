"""Builds `tokenizer.json` text with the `tokenizers` library from the raw vocabularies found in
GGUF and llama2.c files. Two families:

- byte-level BPE (GPT-2 style): tokens are spelled in GPT-2's byte alphabet and the file lists the
  merges; the pre-tokenizer regex depends on the model (`PRE_TOKENIZERS`).
- SentencePiece BPE with byte fallback (Llama 1/2 style): the file lists tokens and scores but no
  merges, so merges are recovered from the scores the way transformers' LlamaConverter does
  (a merge's rank is the score of the token it makes).

Whether BOS/EOS are prepended/appended is encoded in the post-processor, as in Hugging Face
tokenizer.json files, so `Tokenizer.encode(text)` gives exactly what the model expects.
"""
from __future__ import annotations

import functools
from functools import lru_cache
from typing import Any, Callable, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from edgert.errors import EdgertError, ModelFormatError, UnsupportedModelError
from edgert.tokenizer import is_library_failure

# llama.cpp token types (llama_token_type / gguf TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _gpt2():
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _split_then_bytes(regex: str):
    return lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _smollm():
    # SmolLM's own tokenizer.json: every digit on its own, then GPT-2's split (llama.cpp's
    # LLAMA_VOCAB_PRE_TYPE_SMOLLM is the same two regexes in sequence).
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _gpt2()])


# `tokenizer.ggml.pre` value -> pre-tokenizer factory. Regexes follow llama.cpp's llama-vocab.cpp.
PRE_TOKENIZERS = {
    "default": _gpt2, "gpt2": _gpt2, "gpt-2": _gpt2,
    "smollm": _smollm,
    "llama-bpe": _split_then_bytes(_LLAMA3_SPLIT), "llama3": _split_then_bytes(_LLAMA3_SPLIT),
    "llama-v3": _split_then_bytes(_LLAMA3_SPLIT), "smaug-bpe": _split_then_bytes(_LLAMA3_SPLIT),
    "qwen2": _split_then_bytes(_QWEN2_SPLIT),
}


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's bytes -> printable unicode map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _post_processor(tokens: Sequence[str], bos_id: int | None, eos_id: int | None,
                    add_bos: bool, add_eos: bool):
    prefix = [tokens[bos_id]] if add_bos and bos_id is not None else []
    suffix = [tokens[eos_id]] if add_eos and eos_id is not None else []
    if not prefix and not suffix:
        return None
    specials = {tokens[i]: i for i in (bos_id if prefix else None, eos_id if suffix else None) if i is not None}
    single = prefix + ["$A"] + suffix
    pair = single + prefix + ["$B:1"] + suffix
    return processors.TemplateProcessing(single=" ".join(single), pair=" ".join(pair),
                                         special_tokens=list(specials.items()))


def _add_typed_tokens(tok: Tokenizer, tokens: Sequence[str], token_types: Sequence[int] | None,
                      in_vocab) -> None:
    """Control tokens become special added tokens and user-defined ones plain added tokens, so
    they are matched whole in text, as llama.cpp does."""
    if token_types is None:
        return
    special = [AddedToken(t, normalized=False, special=True)
               for t, ty in zip(tokens, token_types) if ty == CONTROL and in_vocab(t)]
    user = [AddedToken(t, normalized=False, special=False)
            for t, ty in zip(tokens, token_types) if ty == USER_DEFINED and in_vocab(t)]
    if special:
        tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)


def _library_errors(build: Callable[..., str]) -> Callable[..., str]:
    """The tokenizers library reports a vocabulary it cannot build (a merge of unknown tokens, say)
    with a bare Exception or a Rust panic; the callers have checked every field, so what is left
    is the vocabulary's content, reported as ModelFormatError."""
    @functools.wraps(build)
    def run(*args: Any, **kwargs: Any) -> str:
        try:
            return build(*args, **kwargs)
        except EdgertError:
            raise
        except BaseException as e:
            if not is_library_failure(e):
                raise
            err = ModelFormatError(f"the vocabulary does not make a valid tokenizer ({type(e).__name__}: "
                                   f"{' '.join(str(e).split())[:200]})")
            # The library reports content it rejects as a bare Exception or a panic; any other
            # type (IndexError, TypeError, ...) means a check before this call is missing.
            if not (type(e) is Exception or type(e).__name__ == "PanicException"):
                err.unexpected = type(e).__name__
            raise err from e
    return run


@_library_errors
def byte_level_bpe(tokens: Sequence[str], merges: Sequence[str], pre: str,
                   token_types: Sequence[int] | None = None, *, bos_id: int | None = None,
                   eos_id: int | None = None, add_bos: bool = False, add_eos: bool = False) -> str:
    """tokenizer.json for a GPT-2 style byte-level BPE vocabulary."""
    if pre not in PRE_TOKENIZERS:
        raise UnsupportedModelError(
            f"byte-level BPE pre-tokenizer {pre!r} is not supported; known: {sorted(PRE_TOKENIZERS)}")
    alpha = byte_alphabet()
    letters = set(alpha.values())
    # A token spelled outside the byte alphabet (a control token with a raw space, say) is
    # re-spelled byte by byte so the BPE model can reach it, as transformers does.
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab[t if set(t) <= letters else "".join(alpha[b] for b in t.encode("utf-8"))] = i
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep:
            raise UnsupportedModelError(f"malformed BPE merge {m!r}")
        pairs.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    _add_typed_tokens(tok, tokens, token_types, lambda t: set(t) <= letters)
    pp = _post_processor(tokens, bos_id, eos_id, add_bos, add_eos)
    tok.post_processor = pp if pp is not None else processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def merges_from_scores(tokens: Sequence[str], scores: Sequence[float]) -> list[tuple[str, str]]:
    """Recover BPE merges from a SentencePiece vocabulary: every split of a token into two
    tokens is a merge ranked by the token's score (higher first); ties keep vocabulary order of
    the pieces, then shorter left/right pieces first, matching transformers' `generate_merges`."""
    ids = {t: i for i, t in enumerate(tokens)}
    found = []
    for tok_str, score in zip(tokens, scores):
        local = []
        for k in range(1, len(tok_str)):
            left, right = tok_str[:k], tok_str[k:]
            if left in ids and right in ids:
                local.append((ids[left], ids[right], left, right, float(score)))
        local.sort(key=lambda x: (x[0], x[1]))
        found.extend(local)
    found.sort(key=lambda x: (x[4], len(x[2]), len(x[3])), reverse=True)
    return [(x[2], x[3]) for x in found]


@_library_errors
def sentencepiece_bpe(tokens: Sequence[str], scores: Sequence[float],
                      token_types: Sequence[int] | None = None, *, unk_id: int | None = 0,
                      bos_id: int | None = 1, eos_id: int | None = 2, add_bos: bool = True,
                      add_eos: bool = False, add_prefix_space: bool = True,
                      legacy_normalizer: bool = False) -> str:
    """tokenizer.json for a SentencePiece BPE vocabulary with `<0xNN>` byte-fallback tokens.

    `legacy_normalizer` spells the leading space with a Prepend+Replace normalizer, as older Hugging
    Face Llama tokenizer.json files (and stories260K's) do; otherwise a Metaspace pre-tokenizer
    does it, as transformers' current LlamaTokenizer does. The two agree on plain text."""
    vocab = {t: i for i, t in enumerate(tokens)}
    unk = tokens[unk_id] if unk_id is not None else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges_from_scores(tokens, scores), dropout=None,
                               unk_token=unk, fuse_unk=True, byte_fallback=True))
    if legacy_normalizer:
        steps = [normalizers.Replace(" ", "▁")]
        if add_prefix_space:
            steps.insert(0, normalizers.Prepend("▁"))
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = None
    else:
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first" if add_prefix_space else "never", split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    if token_types is None:  # no types recorded: unk/bos/eos are the control tokens
        token_types = [CONTROL if i in (unk_id, bos_id, eos_id) else NORMAL for i in range(len(tokens))]
    _add_typed_tokens(tok, tokens, token_types, lambda t: True)
    pp = _post_processor(tokens, bos_id, eos_id, add_bos, add_eos)
    if pp is not None:
        tok.post_processor = pp
    return tok.to_str()
