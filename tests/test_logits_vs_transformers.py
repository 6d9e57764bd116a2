"""End to end: models converted by edgert.converters and run by the edgert runtime give the logits
and greedy continuations of PyTorch transformers running the original checkpoint.

Tolerance: the max abs difference over the spread (std) of the reference logits. Float-weight
models and quantized models in exact mode (`LLM(exact=True)`: f32 activations) differ from PyTorch
only by float rounding (measured ≤ 0.002), so LOGIT_TOL_REL is tight; a wrong tensor, a missed Q/K
permutation or a wrong rope theta gives differences of the order of the std itself.

The default path multiplies quantized weights with int8-quantized activations, as llama.cpp does;
on SmolLM2 Q4_1 that alone moves logits by 0.2-0.3 std (llama.cpp's own error against the same
PyTorch reference, measured on "The capital of France is": 0.17 std; edgert's: 0.28 std), so the fast
path gets its own bound, FAST_TOL_REL, plus agreement on the top token and a KL bound.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SMOLLM2_GGUF, STORIES
from converters import convert

import torch
import transformers

from edgert import LLM

transformers.logging.set_verbosity_error()

LOGIT_TOL_REL = 0.02   # max |edgert - torch| / std(torch logits), float rounding only
FAST_TOL_REL = 0.5     # the int8-activation path on 4-bit weights (see the module docstring)
FAST_KL_MAX = 0.02     # KL(torch || edgert) of the next-token distribution, int8 path
ERRORS: list[float] = []  # measured errors, printed by -s runs for choosing the tolerance
STORY_PROMPTS = ["Once upon a time", "The little dog was", "Lily and Tom went to the park. They"]
SMOL_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at a temperature of"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64) - x.max()
    return x - np.log(np.exp(x).sum())


def _check_logits(llm, ref_model, ids: list[int], tol: float = LOGIT_TOL_REL,
                  kl_max: float | None = None) -> float:
    with torch.no_grad():
        want = ref_model(torch.tensor([ids])).logits[0, -1].float().numpy()
    got = llm.logits(ids)
    assert got.shape == want.shape and got.dtype == np.float32
    err = float(np.abs(got - want).max() / want.std())
    assert err < tol, f"relative logit error {err:.4f} on {ids[:8]}"
    assert int(got.argmax()) == int(want.argmax())
    if kl_max is not None:
        lp, lq = _log_softmax(want), _log_softmax(got)
        kl = float((np.exp(lp) * (lp - lq)).sum())
        assert kl < kl_max, f"KL {kl:.5f} on {ids[:8]}"
    if tol == LOGIT_TOL_REL:
        ERRORS.append(err)
    return err


def _check_greedy(llm, ref_model, ids: list[int], n: int = 32, eos: set[int] = frozenset()):
    with torch.no_grad():
        out = ref_model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, min_new_tokens=0)
    want = out[0, len(ids):].tolist()
    cut = next((i for i, t in enumerate(want) if t in eos), len(want))
    got = llm.generate_ids(ids, max_tokens=n)
    assert got[:cut] == want[:cut]


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    d = tmp_path_factory.mktemp("stories")
    hf = LLM(convert(STORIES / "hf", d / "hf.edgt", progress=False), n_ctx=256, n_threads=2)
    l2c = LLM(convert(STORIES / "stories260K.bin", d / "l2c.edgt", progress=False), n_ctx=256, n_threads=2)
    ref = transformers.AutoModelForCausalLM.from_pretrained(STORIES / "hf", dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(STORIES / "hf")
    return hf, l2c, ref, tok


def test_stories_logits_and_greedy(stories):
    hf, l2c, ref, tok = stories
    for p in STORY_PROMPTS:
        ids = tok.encode(p)
        assert hf.tokenize(p) == ids
        _check_logits(hf, ref, ids)
        _check_greedy(hf, ref, ids, eos={2})
    assert hf.generate("Once upon a time", max_tokens=12, temperature=0.0).startswith(", there was a little girl")


def test_llama2c_equals_hf_import(stories):
    hf, l2c, _, tok = stories
    for p in STORY_PROMPTS:
        ids = tok.encode(p)
        assert l2c.tokenize(p) == ids
        np.testing.assert_array_equal(l2c.logits(ids), hf.logits(ids))


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    d = tmp_path_factory.mktemp("smol")
    path = convert(SMOLLM2_GGUF, d / "smol.edgt", progress=False)
    ref = transformers.AutoModelForCausalLM.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name,
                                                            dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    return path, ref, tok


@pytest.mark.slow
def test_smollm2_exact_matches_transformers(smol):
    """The issue's proof: tight logits and 32 identical greedy tokens on the real Q4_1 GGUF."""
    path, ref, tok = smol
    # f16 KV: the reference cache type (the default int8 KV rounds q in attention, an int8 effect
    # that the fast-path test below covers).
    with LLM(path, n_ctx=512, n_threads=2, exact=True, kv_type="f16") as llm:
        for p in SMOL_PROMPTS:
            ids = tok.encode(p)
            assert llm.tokenize(p) == ids
            _check_logits(llm, ref, ids)
            _check_greedy(llm, ref, ids, eos={2})
        assert llm.generate("The capital of France is", max_tokens=8).startswith(" Paris.")


@pytest.mark.slow
def test_smollm2_fast_path_close_to_transformers(smol):
    path, ref, tok = smol
    with LLM(path, n_ctx=512, n_threads=2) as llm:
        for p in SMOL_PROMPTS:
            _check_logits(llm, ref, tok.encode(p), tol=FAST_TOL_REL, kl_max=FAST_KL_MAX)
        assert llm.generate("The capital of France is", max_tokens=8).startswith(" Paris.")


@pytest.mark.parametrize("kind,dtype", [("llama_untied", "float32"), ("mistral", "bfloat16"),
                                        ("qwen2", "float16"), ("llama_tied", "float32")])
def test_tiny_random_models(tiny_hf, tmp_path, kind, dtype):
    src = tiny_hf(kind, dtype)
    llm = LLM(convert(src, tmp_path / "m.edgt", progress=False), n_ctx=128, n_threads=2)
    # the reference runs the same (already rounded) weights in float32
    ref = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    rng = np.random.default_rng(len(kind))
    for n in (1, 7, 40):
        ids = [1] + rng.integers(3, 512, n).tolist()
        _check_logits(llm, ref, ids)
    _check_greedy(llm, ref, [1, 400, 300, 200], n=16, eos={2})


def teardown_module(module):
    if ERRORS:
        print(f"\nlogit error / std: max {max(ERRORS):.4f}, mean {np.mean(ERRORS):.4f} over {len(ERRORS)} prompts")
