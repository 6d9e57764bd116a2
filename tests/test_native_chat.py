"""Native chat formatting (edgert_chat_format) equals what the templates themselves render in
jinja2 (edgert.chat_template, the Python path), for the families it recognises; other templates
and conversations a template rejects get typed errors. The templates are the models' own
(Hugging Face tokenizer_config.json files, as llama.cpp's tests/test-chat-template.cpp quotes them,
and SmolLM2's from its GGUF)."""
from __future__ import annotations

import pytest

from edgert import _edgert
from edgert.chat_template import ChatTemplate
from edgert.errors import (ChatTemplateError, InvalidArgumentError, ModelFormatError, TokenizerError,
                           UnsupportedModelError)

from conftest import SMOLLM2_GGUF
from tokenizer_cases import tiny_model, tokenizer_variants

TEMPLATES = {
    # teknium/OpenHermes-2.5-Mistral-7B
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    # mistralai/Mistral-7B-Instruct-v0.2
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    # meta-llama/Llama-2-7b-chat-hf
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    # google/gemma-7b-it
    "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    # microsoft/Phi-3-mini-4k-instruct (the "Phi 3 New" one of llama.cpp's test)
    "phi3-legacy": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\\n'}}{% endif %}{% endfor %}",
    # microsoft/Phi-3.5-mini-instruct
    "phi3": "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
TURNS = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
         {"role": "user", "content": "Who are you"}, {"role": "assistant", "content": "   I am an assistant   "},
         {"role": "user", "content": "Another question ünïcödé 😀\n\twith space  "}]


def smollm2_template() -> str:
    from converters.gguf_reader import GGUFFile
    with GGUFFile(SMOLLM2_GGUF) as g:
        return g.get("tokenizer.chat_template")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model with SmolLM2's tokenizer and chat template (BOS <|im_start|>, EOS <|im_end|>)."""
    tok = tokenizer_variants()["smollm2"]
    path = tiny_model(tmp_path_factory.mktemp("chat") / "m.edgt", tok, 49152, smollm2_template())
    return _edgert.model_load(str(path))


def jinja(template: str, messages, gen: bool) -> str:
    return ChatTemplate(template, bos_token="<|im_start|>", eos_token="<|im_end|>").render(
        messages, add_generation_prompt=gen)


CONVERSATIONS = [TURNS, TURNS[:1], TURNS[:2], [SYSTEM] + TURNS, [SYSTEM] + TURNS[:1]]


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_families_equal_jinja(model, family) -> None:
    template = TEMPLATES[family]
    assert _edgert.chat_template_family(model, template) == family.split("-")[0]
    for messages in CONVERSATIONS:
        for gen in (True, False):
            try:
                want = jinja(template, messages, gen)
            except ChatTemplateError:
                with pytest.raises(InvalidArgumentError, match="rejects"):
                    _edgert.chat_format(model, messages, gen, template)
                continue
            assert _edgert.chat_format(model, messages, gen, template) == want, (family, messages, gen)


def test_smollm2_own_template_with_its_default_system_prompt(model) -> None:
    template = smollm2_template()
    assert _edgert.chat_template_family(model, None) == "chatml"
    for messages in CONVERSATIONS:
        want = jinja(template, messages, True)
        assert _edgert.chat_format(model, messages, True) == want
    assert "You are a helpful AI assistant named SmolLM" in _edgert.chat_format(model, TURNS[:1])


def test_qwen2_style_default_system_prompt(model) -> None:
    template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    for messages in CONVERSATIONS:
        assert _edgert.chat_format(model, messages, True, template) == jinja(template, messages, True)


def test_unknown_templates_and_bad_messages_are_typed_errors(model) -> None:
    zephyr = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
              "message['content'] + eos_token }}{% endif %}{% endfor %}")
    for template in (zephyr, "{{ messages }}", ""):
        with pytest.raises(UnsupportedModelError, match="not one of the families"):
            _edgert.chat_format(model, TURNS[:1], True, template)
        assert _edgert.chat_template_family(model, template) is None
    llama31 = TEMPLATES["llama3"].replace("{% set loop_messages", "Cutting Knowledge Date{% set loop_messages")
    with pytest.raises(UnsupportedModelError, match="Llama 3.1"):
        _edgert.chat_format(model, TURNS[:1], True, llama31)
    with pytest.raises(TokenizerError):
        _edgert.chat_format(model, [{"role": "user", "content": b"\xff"}], True)
    # a template's default system prompt is copied into the prompt: its bytes must be UTF-8 too
    # (before, edgert_chat_format copied the invalid bytes into the prompt it returned)
    bad_system = b"<|im_start|>system\nHi \xed\xa0\x80<|im_end|>{{'<|im_start|>' + message['content'] }}"
    with pytest.raises(TokenizerError, match="chat_template is not valid UTF-8"):
        _edgert.chat_format(model, TURNS[:1], True, bad_system)
    with pytest.raises(InvalidArgumentError, match="alternate"):
        _edgert.chat_format(model, [TURNS[1]], True, TEMPLATES["mistral"])


def test_model_without_template(tmp_path) -> None:
    tok = tokenizer_variants()["gpt2"]
    m = _edgert.model_load(str(tiny_model(tmp_path / "nt.edgt", tok, 50257, None)))
    with pytest.raises(UnsupportedModelError, match="no chat template"):
        _edgert.chat_format(m, TURNS[:1], True)
    # a chat_template that is not text: the file loads and runs on ids (edgert info, the Python
    # side open it too, tests/test_hostile_inputs.py); formatting with it is a format error
    odd = _edgert.model_load(str(tiny_model(tmp_path / "odd.edgt", tok, 50257, 12)))
    assert _edgert.tokenize(odd, "hello", 0) == [31373]
    with pytest.raises(ModelFormatError, match="chat_template is not text"):
        _edgert.chat_format(odd, TURNS[:1], True)
    assert "<|im_start|>user" in _edgert.chat_format(odd, TURNS[:1], True, TEMPLATES["chatml"])
