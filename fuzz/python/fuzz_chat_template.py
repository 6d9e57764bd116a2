#!/usr/bin/env python3
"""atheris target: a chat template and the messages from the fuzzer, rendered by
`edgert.chat_template.ChatTemplate` (jinja2's sandbox with edgert's work and output limits).

Input: the template source, optionally followed by SEPARATOR and the messages as JSON (a list of
{"role", "content"} objects; anything else renders the fixed probe conversation)."""
from __future__ import annotations

import json

import atheris  # noqa: F401

import harness

with harness.instrumented("jinja2"):
    from edgert.chat_template import ChatTemplate

SEPARATOR = b"\n\x00MESSAGES\x00\n"


def test_one_input(data: bytes) -> None:
    source, sep, tail = data.partition(SEPARATOR)
    messages = harness.PROBE_MESSAGES
    if sep:
        try:
            messages = json.loads(tail.decode("utf-8", "replace"))
        except ValueError:
            pass
    with harness.typed_errors_allowed():
        template = ChatTemplate(source.decode("utf-8", "replace"), bos_token="<s>", eos_token="</s>")
        template.render(messages, add_generation_prompt=bool(len(data) & 1))


if __name__ == "__main__":
    harness.main(test_one_input)
