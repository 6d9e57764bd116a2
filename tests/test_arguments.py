"""Every argument of LLM, Model/Context/Sampler and the CLI is checked with a typed error that says
the allowed range: no pybind11 TypeError listing C++ signatures, no silent truncation of 1.7 to
token 1, no traceback from the command line (without EDGERT_DEBUG=1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgert
from edgert import LLM
from edgert.errors import InvalidArgumentError, TokenIdError
from edgert.model import ContextParams, Model, Sampler, SamplerParams


@pytest.fixture(scope="module")
def llm(stories_edgt: Path):
    with LLM(stories_edgt, n_threads=1) as model:
        yield model


@pytest.mark.parametrize("kwargs,pattern", [
    ({"n_ctx": 2**31}, r"n_ctx = 2147483648 is outside the allowed range \[0, 2147483647\]"),
    ({"n_ctx": -1}, r"n_ctx = -1 is outside"),
    ({"n_ctx": 1.5}, r"n_ctx must be an integer"),
    ({"n_threads": 3_000_000_000}, r"n_threads = 3000000000 is outside the allowed range \[0, 1024\]"),
    ({"n_threads_batch": "2"}, r"n_threads_batch must be an integer"),
    ({"kv_type": 5}, r"kv_type must be one of"),
    ({"verify": "no"}, r"verify must be True or False"),
    ({"exact": 2}, r"exact must be True or False"),
])
def test_llm_constructor_arguments(stories_edgt: Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(InvalidArgumentError, match=pattern):
        LLM(stories_edgt, **kwargs)


def test_llm_path_argument() -> None:
    with pytest.raises(InvalidArgumentError, match="path must be a path"):
        LLM(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="NUL"):
        LLM("a\0b")


@pytest.mark.parametrize("call,error,pattern", [
    (lambda m: m.generate("hi", stop=123), InvalidArgumentError, r"stop must be a string or a list of strings"),
    (lambda m: m.generate("hi", stop=["ok", 5]), InvalidArgumentError, r"stop\[1\] must be a string"),
    (lambda m: m.generate("hi", max_tokens=2**40), InvalidArgumentError, r"max_tokens = 1099511627776 is outside"),
    (lambda m: m.generate("hi", max_tokens=-1), InvalidArgumentError, r"max_tokens = -1 is outside"),
    (lambda m: m.generate("hi", temperature=float("nan")), InvalidArgumentError, r"temperature must be a finite"),
    (lambda m: m.generate("hi", temperature=-1.0), InvalidArgumentError, r"temperature = -1 is outside"),
    (lambda m: m.generate("hi", top_p=1.5), InvalidArgumentError, r"top_p = 1.5 is outside the allowed range \[0, 1\]"),
    (lambda m: m.generate("hi", top_k=-3), InvalidArgumentError, r"top_k = -3 is outside"),
    (lambda m: m.generate("hi", min_p=2.0), InvalidArgumentError, r"min_p = 2 is outside"),
    (lambda m: m.generate("hi", repeat_penalty=0.0), InvalidArgumentError, r"repeat_penalty = 0 is outside"),
    (lambda m: m.generate("hi", seed=-1), InvalidArgumentError, r"seed = -1 is outside"),
    (lambda m: m.generate("hi", seed=2**64), InvalidArgumentError, r"seed = 18446744073709551616 is outside"),
    (lambda m: m.generate("hi", stream="yes"), InvalidArgumentError, r"stream must be True or False"),
    (lambda m: m.generate_ids([1.7]), InvalidArgumentError, r"token ids\[0\] = 1.7 is not an integer token id"),
    (lambda m: m.generate_ids(np.array([1.0, 2.0])), InvalidArgumentError, r"1-D integer array"),
    (lambda m: m.generate_ids([1, 2**31]), TokenIdError, r"token id 2147483648 at position 1 is outside \[0, 512\)"),
    (lambda m: m.generate_ids([True]), InvalidArgumentError, r"is not an integer token id"),
    (lambda m: m.generate_ids("hello"), InvalidArgumentError, r"not text"),
    (lambda m: m.generate_ids([1], foo=1), InvalidArgumentError, r"unknown argument\(s\) foo; allowed: temperature"),
    (lambda m: m.chat([{"role": "user", "content": "x"}], bogus=1), InvalidArgumentError, r"unknown argument\(s\) bogus"),
    (lambda m: m.logits([1, -5]), TokenIdError, r"token id -5 at position 1"),
    (lambda m: m.logits([1], all_positions="x"), InvalidArgumentError, r"all_positions must be True or False"),
    (lambda m: m.detokenize([2**40]), TokenIdError, r"token id 1099511627776"),
    (lambda m: m.tokenize("x", add_bos="yes"), InvalidArgumentError, r"add_bos must be True or False"),
    (lambda m: m.tokenize(123), edgert.TokenizerError, r"cannot tokenize a int"),
    (lambda m: m.context.trim(10**12), InvalidArgumentError, r"n_keep = 1000000000000 is outside"),
    (lambda m: m.context.eval([0.5]), InvalidArgumentError, r"tokens\[0\] = 0.5 is not an integer"),
    (lambda m: m.context.generate(Sampler(), [1], 2**31), InvalidArgumentError, r"max_new_tokens = 2147483648"),
    (lambda m: m.context.generate(Sampler(), [1], 4, callback=5), InvalidArgumentError, r"callback must be callable"),
    (lambda m: m.context.generate("sampler", [1], 4), InvalidArgumentError, r"sampler must be an edgert.model.Sampler"),
])
def test_call_arguments(llm: LLM, call, error, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call(llm)


def test_object_layer_arguments(stories_edgt: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="verify must be True or False"):
        Model(stories_edgt, verify="yes")  # type: ignore[arg-type]
    with Model(stories_edgt) as model:
        with pytest.raises(InvalidArgumentError, match="params must be a ContextParams"):
            model.new_context({"n_ctx": 8})  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="memory_budget = -1"):
            model.new_context(ContextParams(memory_budget=-1))
    with pytest.raises(InvalidArgumentError, match="top_k = 2147483648 is outside"):
        Sampler(SamplerParams(top_k=2**31))
    with Sampler() as s:
        with pytest.raises(InvalidArgumentError, match="logits must be a non-empty 1-D float"):
            s.sample(np.zeros((2, 2), np.float32))
        with pytest.raises(InvalidArgumentError, match="not an integer token id"):
            s.accept(1.5)  # type: ignore[arg-type]
        assert s.sample(np.array([0.0, 3.0, 1.0], np.float32)) == 1


def test_valid_arguments_still_work(llm: LLM) -> None:
    assert llm.generate_ids(np.array([1, 403], dtype=np.int16), 3) == llm.generate_ids([1, 403], 3)
    assert isinstance(llm.generate("Once", max_tokens=2, stop=("zzz",), temperature=0, top_p=1.0), str)


def _edgert(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgert", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args,pattern", [
    (["-c", "3000000000"], "n_ctx = 3000000000 is outside the allowed range [0, 2147483647]"),
    (["-t", "3000000000"], "n_threads = 3000000000 is outside the allowed range [0, 1024]"),
    (["-n", "-5"], "max_tokens = -5 is outside"),
    (["--top-p", "7"], "top_p = 7 is outside"),
    (["--temp", "nan"], "temperature must be a finite number"),
    (["--seed", "-1"], "seed = -1 is outside"),
])
def test_cli_arguments_are_one_line_errors(stories_edgt: Path, tmp_path: Path, args: list, pattern: str) -> None:
    r = _edgert("run", str(stories_edgt), "Once", *args, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("edgert: error:") and pattern in r.stderr, r.stderr
    r = _edgert("run", str(stories_edgt), "Once", *args, cwd=tmp_path, env={"EDGERT_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr
