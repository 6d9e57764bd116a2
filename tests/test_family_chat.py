"""Chat templates of the model families and the tokens that end a turn.

The templates below are in the families' own formats (Gemma 2's is the one google/gemma-2-2b-it
publishes; the others are the no-tools branches of the Qwen2.5/Qwen3/Llama 3.2/Phi-3.5 templates,
with the jinja features those use: namespace, loop controls, string methods, strftime_now,
raise_exception). Each renders through edgert's sandboxed renderer exactly as transformers'
apply_chat_template renders it (the reference). The converters read the end-of-turn token of each
template from the template itself, and generation stops on it: a tiny model is made to emit
`<|im_end|>` mid-generation, and edgert stops there from the HF checkpoint and from a GGUF that
lists only the end-of-text token as EOS.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import AddedToken, Tokenizer

from conftest import STORIES
from converters import convert
from converters.edgt_file import read_edgt
from converters.end_of_turn import end_of_turn_ids
from edgert import LLM
from edgert.chat_template import ChatTemplate
from edgert.errors import ChatTemplateError
from test_families import make_family_hf, write_gguf

transformers.logging.set_verbosity_error()

SPECIALS = ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

GEMMA2 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
          "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
          "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
GEMMA3 = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
          "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
          "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
          "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
          "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}{%- endif -%}"
          "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
          "{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
          "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
          "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}")
QWEN25 = ("{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
          "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
          "{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first)"
          " or (message.role == \"assistant\") %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
          "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
QWEN3 = ("{%- set ns = namespace(last_query_index=messages|length - 1) %}{%- for message in messages %}"
         "{%- if message.role == 'user' %}{%- set ns.last_query_index = loop.index0 %}{%- endif %}{%- endfor %}"
         "{%- for message in messages %}{%- set content = message.content %}{%- set reasoning = '' %}"
         "{%- if message.role == 'assistant' and '</think>' in content %}"
         "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
         "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
         "{%- if message.role == 'assistant' and loop.index0 > ns.last_query_index %}"
         "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n\\n' + content + '<|im_end|>\\n' }}"
         "{%- continue %}{%- endif %}"
         "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
         "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}")
LLAMA32 = ("{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
           "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
           "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
           "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}"
           "{{- 'Today Date: ' + date_string + '\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}"
           "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
           " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
           "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
PHI35 = ("{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
         "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
         "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
         "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

TEMPLATES = {"gemma2": (GEMMA2, "<end_of_turn>"), "gemma3": (GEMMA3, "<end_of_turn>"),
             "qwen2.5": (QWEN25, "<|im_end|>"), "qwen3": (QWEN3, "<|im_end|>"),
             "llama3.2": (LLAMA32, "<|eot_id|>"), "phi3.5": (PHI35, "<|end|>")}
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "<think>greet</think>\nHello!"}, {"role": "user", "content": " And you? "}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello!"}],
]


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    """stories260K's tokenizer with the families' special tokens as ids 512 and up."""
    tok = Tokenizer.from_file(str(STORIES / "hf" / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def _hf_tokenizer(tokenizer_json: Path, template: str):
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), bos_token="<s>",
                                                eos_token="</s>", chat_template=template)


@pytest.mark.parametrize("family", TEMPLATES)
def test_templates_render_as_transformers_does(tokenizer_json, family):
    template, _ = TEMPLATES[family]
    ref = _hf_tokenizer(tokenizer_json, template)
    ours = ChatTemplate(template, bos_token="<s>", eos_token="</s>")
    for messages in CONVERSATIONS:
        for gen in (True, False):
            try:
                want = ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            except Exception as e:  # the template refuses this conversation (Gemma 2: no system)
                with pytest.raises(ChatTemplateError, match="System role not supported"):
                    ours.render(messages, add_generation_prompt=gen)
                assert "System role not supported" in str(e)
                continue
            assert ours.render(messages, add_generation_prompt=gen) == want


@pytest.mark.parametrize("family", TEMPLATES)
def test_end_of_turn_token_read_from_the_template(tokenizer_json, family):
    template, token = TEMPLATES[family]
    tok = {"json": tokenizer_json.read_text(), "bos_token_id": 1, "eos_token_ids": [2]}
    assert end_of_turn_ids(template, tok) == [512 + SPECIALS.index(token)]
    # A template that ends turns with the end-of-text token finds that one (nothing new for the
    # file's EOS list); no template or a failing one, nothing.
    assert end_of_turn_ids("{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}", tok) == [2]
    assert end_of_turn_ids(None, tok) == []
    assert end_of_turn_ids("{{ raise_exception('no') }}", tok) == []


@pytest.fixture(scope="module")
def chatty(tmp_path_factory, tokenizer_json):
    """A tiny Qwen3 whose greedy continuation of PROMPT emits <|im_end|> at step 6 (its output
    row copies the row of the token greedy picks there, slightly larger), with a ChatML
    template and EOS </s> only: (hf dir, the reference model, greedy tokens)."""
    d = tmp_path_factory.mktemp("chatty")
    hf = d / "hf"
    make_family_hf("qwen3", hf)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    model.resize_token_embeddings(512 + len(SPECIALS))
    im_end = 512 + SPECIALS.index("<|im_end|>")
    with torch.no_grad():
        base = model.generate(torch.tensor([PROMPT]), max_new_tokens=8, do_sample=False)[0, len(PROMPT):]
        model.lm_head.weight[im_end] = model.lm_head.weight[int(base[6])] * 1.05
    model.generation_config.eos_token_id = 2
    shutil.rmtree(hf)
    model.save_pretrained(hf, safe_serialization=True)
    shutil.copy(tokenizer_json, hf / "tokenizer.json")
    tcfg = json.loads((STORIES / "hf" / "tokenizer_config.json").read_text())
    tcfg["chat_template"] = QWEN25
    tcfg.pop("added_tokens_decoder", None)
    (hf / "tokenizer_config.json").write_text(json.dumps(tcfg))
    ref = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref.generate(torch.tensor([PROMPT]), max_new_tokens=16, do_sample=False,
                            eos_token_id=None)[0, len(PROMPT):].tolist()
    assert im_end in want, "the test model must emit <|im_end|> (precondition)"
    return hf, want, im_end


PROMPT = [1, 400, 300, 200, 100, 50]


@pytest.mark.parametrize("source", ["hf", "gguf"])
def test_generation_stops_at_the_end_of_turn_token(chatty, tmp_path, source):
    hf, want, im_end = chatty
    src = hf if source == "hf" else write_gguf(hf, tmp_path / "m.gguf")
    path = convert(src, tmp_path / "m.edgt", progress=False)
    assert read_edgt(path).metadata["tokenizer"]["eos_token_ids"] == [2, im_end]
    with LLM(path, n_ctx=128, n_threads=2, exact=True, kv_type="f16") as llm:
        assert llm.generate_ids(PROMPT, max_tokens=16) == want[:want.index(im_end)]
