"""LLM.chat on SmolLM2-135M-Instruct (its GGUF converted at test time): the template rendering
against transformers, the known answer, KV-cache reuse across turns, UTF-8-safe streaming, and
the sandbox of ChatTemplate."""
from __future__ import annotations

from pathlib import Path

import pytest

import edgert
from edgert import LLM
from edgert.chat_template import ChatTemplate

QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def llm(smollm2_edgt: Path):
    with LLM(smollm2_edgt, n_ctx=512, n_threads=2) as model:
        yield model


def test_template_renders_like_transformers(llm: LLM) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi ünïcødé"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"}]
    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=llm.metadata["chat_template"],
        add_generation_prompt=True, bos_token=llm.tokenizer.bos_token,
        eos_token=llm.tokenizer.eos_token)
    assert llm.render_chat(messages) == rendered[0]


def test_chat_gives_the_known_answer(llm: LLM) -> None:
    answer = llm.chat([{"role": "user", "content": QUESTION}], max_tokens=24)
    assert answer.startswith("The capital of France is Paris.")
    assert "<|im_end|>" not in answer  # EOS ends the turn and is not part of the text


def test_second_turn_reuses_the_cache_and_matches_a_fresh_run(llm: LLM,
                                                              smollm2_edgt: Path) -> None:
    llm.reset()
    messages = [{"role": "user", "content": QUESTION}]
    first = llm.chat(messages, max_tokens=24)
    messages += [{"role": "assistant", "content": first},
                 {"role": "user", "content": "And of Italy?"}]
    evaluated: list[int] = []
    original = llm.context.eval

    def counting_eval(tokens, **kw):
        evaluated.append(len(tokens))
        return original(tokens, **kw)

    llm.context.eval = counting_eval  # type: ignore[method-assign]
    try:
        second = "".join(llm.chat(messages, max_tokens=16, stream=True))
    finally:
        del llm.context.eval
    n_prompt = len(llm.tokenize(llm.render_chat(messages), add_bos=False))
    assert evaluated[0] < n_prompt - 20, "the first turn's tokens should come from the cache"
    with LLM(smollm2_edgt, n_ctx=512, n_threads=2) as fresh:
        assert fresh.chat(messages, max_tokens=16) == second
    assert "Rome" in second


def test_streamed_multibyte_text_never_holds_replacement_chars(llm: LLM) -> None:
    # Byte-level BPE splits most CJK characters over two or three tokens.
    messages = [{"role": "user", "content": "Write the Japanese word for 'thank you' in "
                                            "hiragana, then the same in Chinese characters."}]
    chunks = list(llm.chat(messages, max_tokens=24, stream=True))
    text = "".join(chunks)
    assert any(ord(ch) > 0x2E80 for ch in text), f"precondition: CJK output expected, got {text!r}"
    assert not any("\ufffd" in c for c in chunks)
    ids = llm.tokenize(llm.render_chat(messages), add_bos=False)
    new = llm.generate_ids(ids, 24)
    prefix = llm.detokenize(ids)
    full = llm.detokenize(ids + new)[len(prefix):]
    # The stream may hold back the bytes of a character the token limit cut in half; a plain
    # decode shows them as U+FFFD. Everything else must be identical.
    assert full.startswith(text) and set(full[len(text):]) <= {"\ufffd"}


def test_bad_messages_are_chat_template_errors(llm: LLM) -> None:
    with pytest.raises(edgert.ChatTemplateError, match="role"):
        llm.chat([{"content": "no role"}])
    with pytest.raises(edgert.ChatTemplateError):
        llm.chat("just a string")  # type: ignore[arg-type]


def test_template_extras_and_sandbox() -> None:
    t = ChatTemplate("{% if messages|length > 1 %}{{ raise_exception('one message only') }}"
                     "{% endif %}{{ bos_token }}{{ messages[0]['content'] }}"
                     "{{ strftime_now('%Y') }}{{ messages|tojson }}",
                     bos_token="<s>")
    out = t.render([{"role": "user", "content": "é"}])
    assert out.startswith("<s>é2") and '"é"' in out
    with pytest.raises(edgert.ChatTemplateError, match="one message only"):
        t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    escape = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(edgert.ChatTemplateError):
        escape.render([{"role": "user", "content": "x"}])
    mutate = ChatTemplate("{% set _ = messages.append(1) %}ok")
    with pytest.raises(edgert.ChatTemplateError):
        mutate.render([{"role": "user", "content": "x"}])
    with pytest.raises(edgert.ChatTemplateError, match="parse"):
        ChatTemplate("{% if %}").render([{"role": "user", "content": "x"}])
