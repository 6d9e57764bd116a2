"""Chat templates come from the model file: rendering one is bounded in time and size
(edgert/template_sandbox.py) and still renders real templates exactly as transformers does.

Hostile templates run in a child process whose address space is capped, so that without the
limits a test fails (MemoryError, or the timeout) instead of taking the machine's memory."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgert.chat_template import ChatTemplate
from edgert.errors import ChatTemplateError

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "python" / "corpus" / "chat_template"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]

HOSTILE = {
    # the three of the issue
    "nested range loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "string times 10**10": "{{ 'a' * 10**10 }}",
    "tojson huge indent": "{{ messages|tojson(indent=10**8) }}",
    # the other ways to spend time or memory in one expression
    "recursive macro loops": "{% macro f(n) %}{% for i in range(1000) %}{{ f(n + 1) if n < 3 }}{% endfor %}"
                             "{% endmacro %}{{ f(0) }}",
    "doubling with ~": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}{{ ns.s|length }}",
    "doubling with +": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                       "{% endfor %}",
    "list times n": "{{ ([1] * 100000) * 100000 }}",
    "integer power": "{{ 7 ** 100000000 }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "str.ljust": "{{ 'a'.ljust(10**9) }}",
    "int.to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "center filter": "{{ 'a'|center(1000000000) }}",
    "replace filter": "{{ ('a' * 100000)|replace('a', 'a' * 100000) }}",
    "join of a generator": "{{ range(100000)|map('string')|join('x' * 10000) }}",
    "macro output": "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}{% endmacro %}"
                    "{{ m()|length }}",
    "str.translate": "{{ 'aaaa'.translate({97: 'x' * 1000}) }}",
    "hook name reassigned": "{% set _edgert_limit_loop = dict %}{% for i in range(10) %}{% endfor %}",
}

_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 29, resource.RLIM_INFINITY))
from edgert.chat_template import ChatTemplate
start = time.monotonic()
try:
    ChatTemplate(sys.argv[1]).render([{"role": "user", "content": "hi"}])
    result = {"error": None}
except BaseException as e:
    result = {"error": type(e).__name__, "message": str(e)}
result["seconds"] = time.monotonic() - start
# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork+exec, so under a
# large pytest process ru_maxrss says the parent's size, not this child's.
with open("/proc/self/status") as f:
    result["maxrss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print(json.dumps(result))
"""


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_stopped_by_a_limit(name: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _CHILD, HOSTILE[name]], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1000:]
    result = json.loads(r.stdout)
    assert result["error"] == "ChatTemplateError", result
    assert "exceeded its limit" in result["message"] or "may not use" in result["message"] \
        or "reserved for edgert" in result["message"], result
    assert result["seconds"] < 5.0, result
    assert result["maxrss_mb"] < 400, result


def test_time_limit_is_configurable_and_kept() -> None:
    t = ChatTemplate(HOSTILE["nested range loops"], max_seconds=0.2)
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match=r"exceeded its limit of 0.2 s"):
        t.render(MESSAGES)
    assert time.monotonic() - start < 1.5


def test_size_limit_scales_with_the_conversation() -> None:
    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{{ messages|tojson }}")
    long = [{"role": "user", "content": "word " * 400_000}]  # 2 M characters, rendered twice
    assert len(ChatTemplate(chatml).render(long)) > 4_000_000
    with pytest.raises(ChatTemplateError, match="exceeded its limit of 1,000 characters"):
        ChatTemplate(chatml, max_chars=1000).render(long)


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir() if not p.name.startswith("regress-")))
def test_real_templates_render_as_transformers_does(seed: str) -> None:
    """The limits change no output: every seed template (SmolLM2's own and the common idioms:
    namespace, macros, filters, loop variables, raise_exception, tojson) renders exactly as
    transformers' own renderer does."""
    from transformers.utils.chat_template_utils import render_jinja_template
    source, _, tail = (CORPUS / seed).read_bytes().partition(b"\n\x00MESSAGES\x00\n")
    messages = json.loads(tail)
    template = source.decode()
    same_variables = {"tools": None, "documents": None}  # transformers passes these
    for add_generation_prompt in (False, True):
        try:
            rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                                add_generation_prompt=add_generation_prompt,
                                                bos_token="<s>", eos_token="</s>")
            want = rendered[0]
        except Exception as e:  # noqa: BLE001  (the template rejects the conversation)
            with pytest.raises(ChatTemplateError, match=str(e)[:30].replace("(", r"\(").replace(")", r"\)")):
                ChatTemplate(template, bos_token="<s>", eos_token="</s>").render(
                    messages, add_generation_prompt=add_generation_prompt, extra=same_variables)
            continue
        got = ChatTemplate(template, bos_token="<s>", eos_token="</s>").render(
            messages, add_generation_prompt=add_generation_prompt, extra=same_variables)
        assert got == want
