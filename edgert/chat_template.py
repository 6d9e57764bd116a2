"""Renders a model's chat template (Hugging Face jinja2 dialect) in jinja2's immutable sandbox, so a
template from an untrusted model file cannot touch Python objects or mutate its inputs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Mapping, NoReturn, Optional, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ChatTemplateError

Message = Mapping[str, Any]


def _raise_exception(message: str) -> NoReturn:
    # Templates call this to reject a conversation they cannot format (e.g. roles out of order).
    raise ChatTemplateError(f"the chat template rejected the messages: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators: Optional[tuple[str, str]] = None, sort_keys: bool = False) -> str:
    # transformers' tojson: no HTML escaping and no key sorting, which tool-calling templates expect.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    bos_token: str = ""
    eos_token: str = ""

    @cached_property
    def _template(self) -> jinja2.Template:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        try:
            return env.from_string(self.source)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"the model's chat template does not parse: {e}") from e

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
               extra: Optional[Mapping[str, Any]] = None) -> str:
        _check_messages(messages)
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **(extra or {}),
            )
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"the chat template failed to render: {e}") from e
        except Exception as e:  # a template is code: any error it raises is a template error
            raise ChatTemplateError(f"the chat template failed to render: "
                                    f"{type(e).__name__}: {e}") from e


def _check_messages(messages: Sequence[Message]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatTemplateError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"message {i} must be a dict with 'role' and 'content' keys, "
                                    f"got {m!r}")
