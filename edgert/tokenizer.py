"""The model's own tokenizer, rebuilt from the tokenizer.json text carried in the file's metadata,
with the file's BOS/EOS conventions (which override any post-processor inside tokenizer.json, so
every converter's output tokenizes the same way).

tokenizer.json comes from the model file and is untrusted. `load_tokenizer_json` is the one way
in, for the converters and the runtime alike: it maps the library's failures (a bare Exception, or
a Rust PanicException, which derives from BaseException) to typed errors, and tries the tokenizer
on probe text before anyone relies on it, so a pre-tokenizer regex that backtracks
catastrophically (onig gives up after ~10^7 steps and the library panics) is refused at load
instead of failing on a user's prompt. Every later call goes through `library_call`, which turns
any failure into TokenizerError.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers.decoders import DecodeStream

from .errors import EdgertError, ModelFormatError, TokenizerError

# Tokens of the prompt given to DecodeStream as left context, so the first generated token
# decodes as it would inside the full text (SentencePiece decoders strip a leading space).
_STREAM_CONTEXT_TOKENS = 8

# Load-time probe: ordinary text of every character class, plus runs of each character a regex
# of the tokenizer names (a nested quantifier over a class backtracks on a long run of one of
# its characters followed by a character that breaks the match).
_PROBE_TEXT = ("Hello, world! It's 2024-01-02: 3.14159 \u00e9t\u00e9 \u65e5\u672c\u8a9e "
               "\U0001F600\n\n\tcode(x) {return a+b;}  <s> done.")
_PROBE_RUN = 48
PROBE_SECONDS = 2.0     # a sane tokenizer needs milliseconds for the whole probe
MAX_REPLACEMENT = 256   # characters a normalizer may substitute for a match


def is_library_failure(e: BaseException) -> bool:
    # pyo3's PanicException derives from BaseException; KeyboardInterrupt/SystemExit must pass.
    return isinstance(e, Exception) or type(e).__name__ == "PanicException"


def library_call(fn: Callable[..., Any], *args: Any, what: str, error: type[EdgertError] = TokenizerError,
                  **kwargs: Any) -> Any:
    """fn(*args) with every failure of the tokenizers library as a typed error naming `what`."""
    try:
        return fn(*args, **kwargs)
    except EdgertError:
        raise
    except BaseException as e:
        if not is_library_failure(e):
            raise
        raise error(f"{what} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """fd 2 to /dev/null for the probe: a Rust panic prints its message there before it unwinds
    into a PanicException we handle. (Brief; another thread's stderr is lost meanwhile.)"""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _regex_probes(spec: Any) -> tuple[list[str], list[str]]:
    """(probe strings, problems) from the parsed tokenizer.json: runs of each character its
    regexes name, and normalizer replacements too long to be sane."""
    chars: set[str] = set()
    problems: list[str] = []
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            regex = node.get("Regex")
            if isinstance(regex, str):
                chars.update(c for c in regex if c not in "()[]{}?*+|^$\\")
            if node.get("type") in ("Replace", "Prepend"):
                text = node.get("content", node.get("prepend"))
                if isinstance(text, str) and len(text) > MAX_REPLACEMENT:
                    problems.append(f"its {node['type']} normalizer inserts {len(text)} characters "
                                    f"(more than {MAX_REPLACEMENT})")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    chars.update("a1 \n.\u00e9\u4e2d")
    probes = [_PROBE_TEXT] + [c * _PROBE_RUN + end for c in sorted(chars) for end in ("!", "a", " ")]
    return probes, problems


def load_tokenizer_json(text: str, where: str) -> HFTokenizer:
    """A tokenizers.Tokenizer from untrusted tokenizer.json text, tried on probe text. Raises
    ModelFormatError naming `where` (e.g. "x.edgt: the embedded tokenizer.json")."""
    if not isinstance(text, str):
        raise ModelFormatError(f"{where} is not text")
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ModelFormatError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise ModelFormatError(f"{where} is not a JSON object")
    probes, problems = _regex_probes(spec)
    if problems:
        raise ModelFormatError(f"{where}: {problems[0]}; refusing it")
    start = time.monotonic()
    with _quiet_stderr():
        hf = library_call(HFTokenizer.from_str, text, what=f"loading {where}", error=ModelFormatError)
        for probe in probes:
            ids = library_call(hf.encode, probe, what=f"{where}: tokenizing the probe text {probe[:20]!r}",
                                error=ModelFormatError).ids
            if len(ids) > 8 * len(probe) + 8:
                raise ModelFormatError(f"{where} turns {len(probe)} characters of probe text into "
                                       f"{len(ids)} tokens; refusing it")
            library_call(hf.decode, ids, what=f"{where}: decoding the probe text", error=ModelFormatError)
            spent = time.monotonic() - start
            if spent > PROBE_SECONDS:
                raise ModelFormatError(f"{where} needs more than {PROBE_SECONDS:g} s to tokenize "
                                       f"{len(probes)} short probe strings (a regex that backtracks?); "
                                       "refusing it")
    return hf


@dataclass
class Tokenizer:
    hf: HFTokenizer
    bos_token_id: Optional[int]
    eos_token_ids: list[int] = field(default_factory=list)
    add_bos: bool = False

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "Tokenizer":
        tok = metadata.get("tokenizer") if isinstance(metadata, dict) else None
        if not isinstance(tok, dict):
            raise ModelFormatError("the model metadata has no tokenizer object; re-convert the model "
                                   "with `edgert convert`")
        if not isinstance(tok.get("json"), str):
            raise ModelFormatError("the model metadata has no tokenizer.json text; re-convert the "
                                   "model with `edgert convert`")
        hf = load_tokenizer_json(tok["json"], "the model file's tokenizer.json")
        n_tokens = hf.get_vocab_size(with_added_tokens=True)

        def token_id(key: str, v: Any) -> Optional[int]:
            # negative means "none" in some writers; anything else must be a token of this vocabulary
            if v is None or isinstance(v, int) and not isinstance(v, bool) and v < 0:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or v >= n_tokens:
                raise ModelFormatError(f"the model metadata's tokenizer {key} = {str(v)[:40]} is not a "
                                       f"token id of its {n_tokens}-token tokenizer; re-convert the model")
            return v
        eos = tok.get("eos_token_ids") or []
        if not isinstance(eos, list):
            raise ModelFormatError("the model metadata's tokenizer eos_token_ids is not a list; re-convert "
                                   "the model")
        return cls(hf=hf, bos_token_id=token_id("bos_token_id", tok.get("bos_token_id")),
                   eos_token_ids=[i for i in (token_id("eos_token_ids", e) for e in eos) if i is not None],
                   add_bos=bool(tok.get("add_bos", False)))

    def token_text(self, token_id: Optional[int]) -> str:
        if token_id is None:
            return ""
        return library_call(self.hf.id_to_token, token_id, what=f"looking up token {token_id}") or ""

    @property
    def bos_token(self) -> str:
        return self.token_text(self.bos_token_id)

    @property
    def eos_token(self) -> str:
        return self.token_text(self.eos_token_ids[0]) if self.eos_token_ids else ""

    def encode(self, text: str | bytes, add_bos: Optional[bool] = None) -> list[int]:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise TokenizerError(f"the prompt is not valid UTF-8 (byte {e.start}: {e.reason}); "
                                     "pass str, or bytes encoded as UTF-8") from e
        if not isinstance(text, str):
            raise TokenizerError(f"cannot tokenize a {type(text).__name__}; pass str or UTF-8 bytes")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TokenizerError(f"the prompt holds a lone surrogate at index {e.start}, which is not "
                                 "valid Unicode; decode your input with errors='replace'") from e
        ids = library_call(self.hf.encode, text, add_special_tokens=False,
                            what=f"tokenizing {len(text)} characters of text").ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return library_call(self.hf.decode, list(ids), skip_special_tokens=skip_special_tokens,
                             what=f"decoding {len(ids)} token ids")

    def stream(self, context_ids: Sequence[int] = ()) -> "TextStream":
        return TextStream(self, list(context_ids)[-_STREAM_CONTEXT_TOKENS:])


class TextStream:
    """Token ids in, text chunks out; a chunk never ends inside a UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer, context_ids: list[int]) -> None:
        self._tokenizer = tokenizer
        self._stream = library_call(DecodeStream, context_ids or None, skip_special_tokens=False,
                                     what="starting a text stream")

    def step(self, token_id: int) -> str:
        return library_call(self._stream.step, self._tokenizer.hf, token_id,
                             what=f"decoding token {token_id}") or ""

    def feed(self, ids: Sequence[int]) -> Iterator[str]:
        for i in ids:
            chunk = self.step(i)
            if chunk:
                yield chunk
