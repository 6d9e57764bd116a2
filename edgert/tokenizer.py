"""The model's own tokenizer, rebuilt from the tokenizer.json text carried in the file's metadata,
with the file's BOS/EOS conventions (which override any post-processor inside tokenizer.json, so
every converter's output tokenizes the same way)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers.decoders import DecodeStream

from .errors import ModelFormatError, TokenizerError

# Tokens of the prompt given to DecodeStream as left context, so the first generated token
# decodes as it would inside the full text (SentencePiece decoders strip a leading space).
_STREAM_CONTEXT_TOKENS = 8


@dataclass
class Tokenizer:
    hf: HFTokenizer
    bos_token_id: Optional[int]
    eos_token_ids: list[int] = field(default_factory=list)
    add_bos: bool = False

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "Tokenizer":
        tok = metadata.get("tokenizer") or {}
        if not isinstance(tok.get("json"), str):
            raise ModelFormatError("the model metadata has no tokenizer.json text; re-convert the "
                                   "model with `edgert convert`")
        try:
            hf = HFTokenizer.from_str(tok["json"])
        except Exception as e:  # tokenizers raises plain Exception on malformed JSON
            raise ModelFormatError(f"the embedded tokenizer.json does not load ({e}); re-convert "
                                   "the model") from e
        bos = tok.get("bos_token_id")
        eos = tok.get("eos_token_ids") or []
        return cls(hf=hf, bos_token_id=bos if bos is not None and bos >= 0 else None,
                   eos_token_ids=[int(e) for e in eos], add_bos=bool(tok.get("add_bos", False)))

    def token_text(self, token_id: Optional[int]) -> str:
        if token_id is None:
            return ""
        return self.hf.id_to_token(token_id) or ""

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
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def stream(self, context_ids: Sequence[int] = ()) -> "TextStream":
        return TextStream(self, list(context_ids)[-_STREAM_CONTEXT_TOKENS:])


class TextStream:
    """Token ids in, text chunks out; a chunk never ends inside a UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer, context_ids: list[int]) -> None:
        self._tokenizer = tokenizer
        self._stream = DecodeStream(context_ids or None, skip_special_tokens=False)

    def step(self, token_id: int) -> str:
        return self._stream.step(self._tokenizer.hf, token_id) or ""

    def feed(self, ids: Sequence[int]) -> Iterator[str]:
        for i in ids:
            chunk = self.step(i)
            if chunk:
                yield chunk
