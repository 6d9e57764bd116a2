"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic. Unknown fields are
ignored (clients send many); a field of the wrong type or out of range is an HTTP 400 whose
OpenAI-style error names the field. Sampling fields left out take the model's defaults
(edgert.defaults)."""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(default=None, ge=0)
    max_completion_tokens: Optional[int] = Field(default=None, ge=0)
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None           # extension (llama.cpp)
    min_p: Optional[float] = None         # extension (llama.cpp)
    repeat_penalty: Optional[float] = None  # extension (llama.cpp)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    n: int = 1
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    response_format: Optional[dict[str, Any]] = None
    grammar: Optional[Union[str, dict[str, Any]]] = None  # extension: GBNF/Lark, or {"type", "value"}
    speculative: Optional[Literal["auto", "lookup", "draft", "off"]] = None  # extension

    def token_limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: Optional[Union[str, list[dict[str, Any]]]] = None

    def text(self) -> str:
        """OpenAI's content may be a list of parts; the text parts are joined."""
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)


class CompletionRequest(_Request):
    prompt: Union[str, list[int]]
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    echo: bool = False


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str
    add_special: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tokens: list[int]
