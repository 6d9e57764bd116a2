"""Structured output and sampling arguments: the native token mask (edgert_sampler_sample_masked /
edgert_sampler_probs), JSON that validates against its schema (jsonschema, an independent
validator), regex and GBNF grammars, unsatisfiable grammars that end with a GrammarError, and
out-of-range sampling arguments refused with InvalidArgumentError."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edgert import GrammarError, InvalidArgumentError, LLM
from edgert.model import Sampler, SamplerParams


def _mask(vocab: int, allowed: list[int]) -> np.ndarray:
    words = np.zeros((vocab + 31) // 32, dtype=np.uint32)
    for t in allowed:
        words[t // 32] |= np.uint32(1 << (t % 32))
    return words.view(np.int32)  # the layout and dtype grammar engines hand out


def test_native_mask_limits_greedy_and_sampled_choices() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32) * 3
    allowed = [3, 64, 65, 500, 999]
    mask = _mask(1000, allowed)
    with Sampler(SamplerParams()) as greedy:
        assert greedy.sample(logits, mask) == allowed[int(np.argmax(logits[allowed]))]
        p = greedy.probs(logits, mask)
        assert p.sum() == 1.0 and p[allowed[int(np.argmax(logits[allowed]))]] == 1.0
    params = SamplerParams(temperature=1.0, top_k=3, seed=7)
    with Sampler(params) as s:
        seen = {s.sample(logits, mask) for _ in range(300)}
        p = s.probs(logits, mask)
    top3 = sorted(allowed, key=lambda t: -logits[t])[:3]
    assert seen == set(top3)  # top-k chose among allowed tokens only
    assert set(np.flatnonzero(p)) == set(top3) and abs(float(p.sum()) - 1) < 1e-6
    e = np.exp(logits[top3] - logits[top3].max())
    np.testing.assert_allclose(p[top3], e / e.sum(), rtol=1e-5)


def test_native_mask_errors_are_typed() -> None:
    logits = np.zeros(100, dtype=np.float32)
    with Sampler(SamplerParams(temperature=0.7)) as s:
        with pytest.raises(InvalidArgumentError, match="allows no token"):
            s.sample(logits, np.zeros(4, dtype=np.int32))
        with pytest.raises(InvalidArgumentError, match="needs 4"):
            s.sample(logits, np.full(3, -1, dtype=np.int32))
        with pytest.raises(TypeError):
            s.sample(logits, np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("kw, name", [
    (dict(temperature=-0.1), "temperature"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(min_p=1.01), "min_p"), (dict(min_p=-0.5), "min_p"),
    (dict(repeat_penalty=0.0), "repeat_penalty"), (dict(temperature=float("nan")), "temperature"),
    (dict(seed=-1), "seed"), (dict(top_k=2.5), "top_k"), (dict(temperature="hot"), "temperature"),
])
def test_sampling_arguments_out_of_range_are_errors(stories_edgt: Path, kw: dict, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        SamplerParams(**kw).validate()
    with LLM(stories_edgt, n_threads=1) as llm:
        with pytest.raises(InvalidArgumentError, match=name):
            llm.generate("Once", max_tokens=2, **kw)


def test_cli_refuses_out_of_range_sampling(stories_edgt: Path, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edgert", "run", str(stories_edgt), "Once",
                        "--top-p", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "top_p" in r.stderr and "Traceback" not in r.stderr


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40},
                   "age": {"type": "integer", "minimum": 0, "maximum": 150},
                   "city": {"type": "string", "maxLength": 40},
                   "skills": {"type": "array", "items": {"type": "string", "maxLength": 30},
                              "maxItems": 3}},
    "required": ["name", "age", "city", "skills"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def smol(smollm2_edgt: Path):
    with LLM(smollm2_edgt, n_ctx=1024, n_threads=2) as llm:
        yield llm


@pytest.mark.slow
@pytest.mark.parametrize("temperature, seed", [(0.0, 0), (0.8, 1), (1.0, 2)])
def test_json_schema_output_validates(smol: LLM, temperature: float, seed: int) -> None:
    messages = [{"role": "user", "content": "Describe a fictional engineer as JSON."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    text = smol.chat(messages, max_tokens=160, temperature=temperature, seed=seed,
                     response_format=fmt)
    assert smol.last_timings.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), PERSON)
    # json_object: any JSON object, streamed. Without a schema nothing bounds its length, so
    # only an answer that ended by itself must parse (at temperature 0 it does).
    chunks = list(smol.chat(messages, max_tokens=160, temperature=temperature, seed=seed,
                            response_format={"type": "json_object"}, stream=True))
    if temperature == 0.0:
        assert smol.last_timings.finish_reason == "stop"
    if smol.last_timings.finish_reason == "stop":
        assert isinstance(json.loads("".join(chunks)), dict)


def test_regex_and_gbnf_grammars(smol: LLM) -> None:
    out = smol.generate("My phone number is", max_tokens=20,
                        grammar={"type": "regex", "value": r" [0-9]{3}-[0-9]{4}"})
    assert re.fullmatch(r" [0-9]{3}-[0-9]{4}", out), out
    gbnf = 'root ::= " " answer "."\nanswer ::= "yes" | "no"'
    out = smol.generate("Is the sky blue? Answer:", max_tokens=10, grammar=gbnf)
    assert out in (" yes.", " no."), out


def test_unsatisfiable_grammar_is_a_clear_error(smol: LLM) -> None:
    impossible = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "integer", "minimum": 5, "maximum": 3}}}
    with pytest.raises(GrammarError, match="[Uu]nsatisfiable"):
        smol.generate("x", max_tokens=5, response_format=impossible)
    with pytest.raises(GrammarError, match="invalid"):
        smol.generate("x", max_tokens=5, grammar="start: undefined_rule")
    # A grammar with no finite sentence cannot hang either: the engine gives up with a clear
    # error, or max_tokens ends it.
    try:
        out = smol.generate("x", max_tokens=6, grammar='start: "a" start')
    except GrammarError as e:
        assert "grammar" in str(e)
    else:
        assert out == "a" * len(out) and smol.last_timings.finish_reason == "length"
    with pytest.raises(InvalidArgumentError, match="response_format"):
        smol.generate("x", response_format={"type": "xml"})
