"""Renders a model's chat template (Hugging Face jinja2 dialect) in jinja2's immutable sandbox, so a
template from an untrusted model file cannot touch Python objects or mutate its inputs, with a
budget of time and characters per render (edgert/template_sandbox.py), so it cannot hang the
caller or take its memory either."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Mapping, NoReturn, Optional, Sequence

import jinja2

from .errors import ChatTemplateError
from .template_sandbox import (INPUT_FACTOR, LIMIT_CHARS, LIMIT_SECONDS, ChatTemplateEnvironment,
                               RenderBudget, run_with_budget, weight)

Message = Mapping[str, Any]


def _raise_exception(message: Any) -> NoReturn:
    # Templates call this to reject a conversation they cannot format (e.g. roles out of order).
    raise ChatTemplateError(f"the chat template rejected the messages: {str(message)[:500]}")


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str) or len(fmt) > 256:
        raise ChatTemplateError("the chat template passed strftime_now a format that is not a string "
                                "of at most 256 characters")
    return datetime.now().strftime(fmt)


@dataclass(frozen=True)
class ChatTemplate:
    """source: the template text. max_seconds / max_chars: the render's limits (None: the
    defaults of template_sandbox, max_chars = max(LIMIT_CHARS, INPUT_FACTOR x the characters of
    the messages and extras))."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    max_seconds: Optional[float] = None
    max_chars: Optional[int] = None

    @cached_property
    def _template(self) -> jinja2.Template:
        if not isinstance(self.source, str):
            raise ChatTemplateError(f"the chat template must be text, not {type(self.source).__name__}")
        env = ChatTemplateEnvironment({"raise_exception": _raise_exception, "strftime_now": _strftime_now})
        try:
            return env.from_string(self.source)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"the model's chat template does not parse: {e}") from e
        except MemoryError:
            raise
        except Exception as e:  # deep nesting (RecursionError), Python's own compiler limits
            raise ChatTemplateError(f"the model's chat template does not parse: {type(e).__name__}: "
                                    f"{str(e)[:200]}") from e

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
               extra: Optional[Mapping[str, Any]] = None) -> str:
        _check_messages(messages)
        if extra is not None and not isinstance(extra, Mapping):
            raise ChatTemplateError("extra must be a mapping of template variables")
        variables = dict(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **(extra or {}),
        )
        chars = self.max_chars or max(LIMIT_CHARS, INPUT_FACTOR * weight(variables, 1 << 40))
        budget = RenderBudget(self.max_seconds or LIMIT_SECONDS, chars)
        template = self._template

        def go() -> str:
            out, size = [], 0
            for piece in template.generate(**variables):
                size += len(piece)
                budget.check_size(size, "the rendered prompt")
                out.append(piece)
            return "".join(out)
        try:
            return run_with_budget(budget, go)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"the chat template failed to render: {e}") from e
        except MemoryError as e:  # a limit that should have refused this earlier: a bug to report
            err = ChatTemplateError(f"the chat template ran out of memory: {e}")
            err.unexpected = "MemoryError"
            raise err from e
        except Exception as e:  # a template is code: any error it raises is a template error
            raise ChatTemplateError(f"the chat template failed to render: "
                                    f"{type(e).__name__}: {str(e)[:300]}") from e


def _check_messages(messages: Sequence[Message]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatTemplateError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"message {i} must be a dict with 'role' and 'content' keys, "
                                    f"got {str(m)[:100]}")
