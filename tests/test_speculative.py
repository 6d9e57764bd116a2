"""Speculative decoding (edgert.speculative, Session.steps): greedy output is the plain loop's
tokens — compared with edgert_generate, the native loop — for prompt lookup and a draft model,
with int8, int4 and f16 KV caches; sampled output follows the target's distribution (chi-square
on stories260K's 512-token vocabulary, with a check that a wrong acceptance rule is caught)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgert import LLM
from edgert.model import Sampler, SamplerParams
from edgert.speculative import MAX_DRAFT, Drafts, PromptLookup, verify_sampled

ARTICLE = ("The Amazon rainforest covers much of the Amazon basin of South America. The basin "
           "encompasses seven million square kilometres, of which five and a half million square "
           "kilometres are covered by the rainforest. The region includes territory belonging to "
           "nine nations and 3,344 indigenous territories.")
CODE = ("def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n"
        "    return 2 * (width + height)\n")
# Input-grounded prompts (the answer copies spans of the prompt) and free ones; several are
# longer than 64 tokens so verification passes cross int4 key-offset blocks.
SMOL_PROMPTS = [
    [{"role": "user", "content": f"Repeat this text word for word:\n\n{ARTICLE}"}],
    [{"role": "user", "content": f"Rename `width` to `w` in this code:\n\n{CODE}"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "List the days of the week, then list them again."}],
]
STORIES_PROMPTS = ["Once upon a time", "Lily and Tom went to the park. Lily and Tom", "The dog",
                   "One day, a little bird", "Tim had a red ball. Tim had a", "The sun was hot."]


def _native_greedy(llm: LLM, ids: list[int], n: int) -> list[int]:
    return llm.generate_ids(ids, n)


def _spec_tokens(llm: LLM, ids: list[int], n: int, draft, params=None) -> tuple[list[int], object]:
    from edgert.session import Timings
    t = Timings()
    out = [s.token for s in llm._session.steps(ids, n, params or SamplerParams(), draft=draft,
                                               timings=t)]
    return out, t


@pytest.fixture(scope="module")
def smol_draft_path(tmp_path_factory) -> Path:
    """A pruned copy of SmolLM2 (8 of its 30 blocks, `convert --layers`) as the draft model."""
    from conftest import SMOLLM2_GGUF
    from edgert.converters import convert
    return convert(SMOLLM2_GGUF, tmp_path_factory.mktemp("draft") / "draft.edgt", progress=False,
                   layers=[0, 1, 2, 3, 4, 5, 28, 29])


@pytest.mark.slow
@pytest.mark.parametrize("kv", ["q8", "q4", "f16"])
def test_greedy_speculation_gives_the_plain_tokens_smollm2(smollm2_edgt: Path, smol_draft_path: Path,
                                                           kv: str) -> None:
    n_drafted = n_accepted = passes = 0
    with LLM(smollm2_edgt, n_ctx=512, n_threads=2, kv_type=kv, draft=smol_draft_path) as llm:
        for messages in SMOL_PROMPTS:
            ids = llm.tokenize(llm.render_chat(messages), add_bos=False)
            ref = _native_greedy(llm, ids, 32)
            for draft in (PromptLookup(), llm._draft):
                got, t = _spec_tokens(llm, ids, 32, draft)
                assert got == ref, (kv, type(draft).__name__, messages[0]["content"][:30])
                n_drafted += t.n_drafted
                n_accepted += t.n_accepted
                passes += t.n_verify_passes
    # Not vacuous: drafts were verified, and some accepted, some rejected.
    assert passes > 10 and 0 < n_accepted < n_drafted


def test_greedy_speculation_gives_the_plain_tokens_stories(stories_edgt: Path, tmp_path: Path) -> None:
    from conftest import STORIES
    from edgert.converters import convert
    draft_path = convert(STORIES / "hf", tmp_path / "draft.edgt", progress=False, layers=[0, 1, 4])
    for kv in ("f32", "f16"):
        with LLM(stories_edgt, n_ctx=256, n_threads=1, kv_type=kv, draft=draft_path) as llm:
            accepted = 0
            for prompt in STORIES_PROMPTS:
                ids = llm.tokenize(prompt)
                ref = _native_greedy(llm, ids, 60)
                for draft in (PromptLookup(min_ngram=1), llm._draft):
                    got, t = _spec_tokens(llm, ids, 60, draft)
                    assert got == ref, (kv, type(draft).__name__, prompt)
                    accepted += t.n_accepted
                # The text API takes the same path (speculative="auto" is lookup when greedy).
                assert llm.generate(prompt, max_tokens=60) == \
                    llm.generate(prompt, max_tokens=60, speculative="off")
            assert accepted > 0


def test_draft_length_is_capped_for_int4_key_blocks() -> None:
    # kv_attention.h: a batch of >= 16 rows from a block start derives its own key offset.
    assert 1 + MAX_DRAFT < 16
    assert PromptLookup(max_draft=100)._adapt.max_draft == MAX_DRAFT


def test_draft_length_starts_short_and_backs_off_when_nothing_is_accepted() -> None:
    """The adaptive policy: a generation's first draft is START_DRAFT tokens (a long draft the
    target rejects costs most of a decode step), doubling up to max_draft while all are
    accepted; at 0% acceptance the waits between drafts double 1, 2, 4 ... up to MAX_BACKOFF."""
    from edgert.speculative import MAX_BACKOFF, START_DRAFT, _Adaptive
    a = _Adaptive(10)
    assert a.ready() and a.k == START_DRAFT == 4
    for want in (8, 10, 10):
        a.feedback(a.k, a.k)
        assert a.k == want
    # never accepted: simulate 300 tokens, one per step, drafting whenever ready
    a.reset()
    passes, drafted = [], 0
    for t in range(300):
        if a.ready():
            passes.append(t)
            drafted += a.k
            a.feedback(a.k, 0)
    assert MAX_BACKOFF == 16
    # drafts 4, 2, then 1; waits 1, 2, 4, 8, then 16 tokens between passes
    assert passes[:5] == [0, 2, 5, 10, 19] and passes[5:] == list(range(36, 300, 17))
    assert drafted == 4 + 2 + (len(passes) - 2)
    # a pass that accepts something ends the back-off
    while not a.ready():
        pass
    a.feedback(1, 1)
    assert a.ready() and a.k == 2


def test_prompt_lookup_proposes_what_followed_the_last_ngram() -> None:
    pl = PromptLookup(max_ngram=3, min_ngram=2, max_draft=4)
    pl.begin([], SamplerParams())
    history = [5, 6, 7, 8, 9, 10, 1, 6, 7]
    assert pl.propose(history, 10).tokens == [8, 9, 10, 1]
    assert pl.propose(history, 2).tokens == [8, 9]  # room bounds the draft
    assert pl.propose([1, 2, 3, 4], 10) is None      # no repeated n-gram: no draft, no cost
    pl.feedback(4, 0)                                # nothing accepted: back off one step
    assert pl.propose(history, 10) is None
    assert pl.propose(history, 10).tokens == [8, 9]  # then retry with a shorter draft


# ---- sampled: the output distribution -------------------------------------------------------

def _chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square(df), Wilson-Hilferty approximation."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _chi2(counts: dict[int, int], p: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic with categories of expected count < 5 pooled into one."""
    n = sum(counts.values())
    expected = p.astype(np.float64) * n
    big = np.flatnonzero(expected >= 5)
    obs_big = np.array([counts.get(int(i), 0) for i in big], dtype=np.float64)
    rest_exp = n - expected[big].sum()
    rest_obs = n - obs_big.sum()
    stat = float(((obs_big - expected[big]) ** 2 / expected[big]).sum())
    df = len(big) - 1
    if rest_exp >= 5:
        stat += (rest_obs - rest_exp) ** 2 / rest_exp
        df += 1
    elif rest_obs > 3 * max(rest_exp, 1):
        stat = float("inf")  # mass where the target has almost none
    return stat, df


class _FixedDraft:
    """A draft source that proposes a fixed token (prompt-lookup style, q one-hot), or draws it
    from a given q (draft-model style)."""

    def __init__(self, token: int, q: np.ndarray | None = None, seed: int = 0) -> None:
        self.token, self.q = token, q
        # Independent of the verifier's stream (seeded with the request's seed).
        self.rng = np.random.default_rng([seed, 12345])

    def begin(self, history, params) -> None:
        pass

    def propose(self, history, room):
        if self.q is None:
            return Drafts([self.token])
        t = int(self.rng.choice(len(self.q), p=self.q / self.q.sum()))
        return Drafts([t], [self.q])

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        pass


def _second_token_counts(llm: LLM, ids: list[int], first: int, draft_factory, n: int,
                         params_kw: dict) -> dict[int, int]:
    counts: dict[int, int] = {}
    seed = 0
    got = 0
    while got < n:
        seed += 1
        params = SamplerParams(seed=seed, **params_kw)
        toks = [s.token for s in llm._session.steps(ids, 2, params, draft=draft_factory(seed))]
        if len(toks) < 2 or toks[0] != first:
            continue
        counts[toks[1]] = counts.get(toks[1], 0) + 1
        got += 1
    return counts


@pytest.mark.slow
def test_sampled_speculation_keeps_the_target_distribution(stories_edgt: Path, monkeypatch) -> None:
    params_kw = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    with LLM(stories_edgt, n_ctx=64, n_threads=1) as llm:
        ids = llm.tokenize("Once upon a time, there was a")  # next: " little" (p ~0.6)
        logits = llm.logits(ids)
        with Sampler(SamplerParams(**params_kw)) as s:
            first = int(np.argmax(s.probs(logits)))
            p2 = s.probs(llm.logits(ids + [first]))
        order = np.argsort(p2)[::-1]
        assert p2[order[0]] < 0.8  # a spread distribution: acceptance and rejection both occur
        d = int(order[1])  # a plausible draft that is not the favourite
        q = np.zeros_like(p2)
        q[order[:8]] = 1.0  # a draft distribution unlike the target's
        q /= q.sum()
        n = 1500
        for name, factory in (("lookup", lambda seed: _FixedDraft(d)),
                              ("draft model", lambda seed: _FixedDraft(0, q, seed))):
            counts = _second_token_counts(llm, ids, first, factory, n, params_kw)
            stat, df = _chi2(counts, p2)
            assert stat < _chi2_critical(df), (name, stat, df)

        # The test can fail: accepting every draft (no rejection step) is caught.
        import edgert.speculative as spec
        monkeypatch.setattr(spec, "verify_sampled", lambda p, q_, t, rng: (True, t))
        counts = _second_token_counts(llm, ids, first, lambda seed: _FixedDraft(0, q, seed), 400,
                                      params_kw)
        stat, df = _chi2(counts, p2)
        assert stat > _chi2_critical(df)


def test_verify_sampled_matches_the_target_exactly_in_expectation() -> None:
    # The accept/residual algebra on a 5-token vocabulary: P(out = t) == p[t] for any q.
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    q = np.array([0.1, 0.1, 0.1, 0.2, 0.5])
    out = np.zeros(5)
    for d in range(5):  # exact expectation over the draft token d ~ q
        accept = min(1.0, p[d] / q[d])
        residual = np.maximum(p - q, 0)
        residual /= residual.sum()
        out[d] += q[d] * accept
        out += q[d] * (1 - accept) * residual
    np.testing.assert_allclose(out, p, atol=1e-12)
    rng = np.random.default_rng(1)
    draws = [verify_sampled(p, q, int(rng.choice(5, p=q)), rng)[1] for _ in range(20000)]
    freq = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freq, p, atol=0.015)


def test_bench_speculative_checks_text_and_reports_cpu_time(stories_edgt: Path) -> None:
    """edgert bench --speculative on one thread: identical text checked, drafts at 0% acceptance
    really drafted and all rejected, and thread CPU time per token reported for every mode."""
    from edgert.bench import bench_speculative, format_speculative
    prompts = [{"name": "story", "messages": [{"role": "user", "content": "Once upon a time"}]}]
    r = bench_speculative(str(stories_edgt), prompts, n_gen=24, n_threads=1, repeats=1,
                          n_ctx=128, modes=("lookup", "always-wrong"))
    p = r["prompts"][0]
    wrong = p["speculation"]["always-wrong"]
    assert p["identical"] and wrong["drafted"] > 0 and wrong["accepted"] == 0
    assert set(p["cpu_tok_s"]) == {"off", "lookup", "always-wrong"}
    assert all(v > 0 for v in r["cpu_speedup_median"].values())
    assert "thread CPU time per decoded token" in format_speculative(r)


def test_keep_layers_carries_the_per_layer_hparams_of_the_kept_blocks() -> None:
    # A sliding-window family's layer_types and a pruned model's widths are per block: a
    # `--layers` copy must keep the entries of the blocks it keeps, in its order.
    from converters.source_model import SourceModel, SourceTensor
    from converters.write_model import keep_layers
    from converters import dtypes
    hp = {"num_layers": 4, "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
          "layer_intermediate_size": [10, 20, 30, 40]}
    tensors = [SourceTensor(f"blk.{i}.ffn_up.weight", (1, 1), dtypes.F32, lambda i=i: bytes([i])) for i in range(4)]
    m = keep_layers(SourceModel("hf", "m", hp, {}, None, tensors), [3, 0])
    assert m.hparams["num_layers"] == 2
    assert m.hparams["layer_types"] == ["full_attention", "sliding_attention"]
    assert m.hparams["layer_intermediate_size"] == [40, 10]
    assert {t.name: t.load() for t in m.tensors} == {"blk.0.ffn_up.weight": b"\x03", "blk.1.ffn_up.weight": b"\x00"}
    assert hp["layer_types"][0] == "sliding_attention"  # the source model is unchanged
