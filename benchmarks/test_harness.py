"""Fast checks of the benchmark harness itself (no engine, no model): the protocol's arithmetic,
the round merging and the report writers. Run: python -m pytest benchmarks/test_harness.py"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402
import run_bench  # noqa: E402

bench = engines.load_protocol()


class FakeEngine:
    """Prefill costs 1 ms per token, each decode step 2 ms."""

    vocab_size = 100

    def __init__(self) -> None:
        self.calls: list[int] = []

    def generate(self, prompt, n_new):
        self.calls.append(len(prompt))
        time.sleep(len(prompt) * 1e-3)
        yield 5
        for _ in range(n_new - 1):
            time.sleep(2e-3)
            yield 5

    def close(self) -> None:
        pass


def test_protocol_measures_prefill_and_decode() -> None:
    p = bench.BenchParams(n_prompt=40, n_gen=10, repeats=3, long_prompt=60, depth=30)
    res = bench.bench_engine("fake", "m", 2, FakeEngine, p)
    assert res.prefill_tok_s == pytest.approx(1000, rel=0.3)     # 1 ms per prompt token
    assert res.ttft_ms == pytest.approx(40, rel=0.3)
    assert res.decode_tok_s == pytest.approx(500, rel=0.3)      # 2 ms per step
    assert res.long_ttft_ms == pytest.approx(60, rel=0.3)
    assert res.depth_decode_tok_s == pytest.approx(500, rel=0.3)
    assert len(res.samples["decode_tok_s"]) == 3
    assert res.peak_rss_mb > 0


def test_protocol_rejects_early_stop() -> None:
    class Short(FakeEngine):
        def generate(self, prompt, n_new):
            yield 1

    with pytest.raises(RuntimeError, match="stopped after"):
        bench.run_protocol(Short(), bench.BenchParams(n_prompt=4, n_gen=8, repeats=1))


def test_n_ctx_covers_every_scenario() -> None:
    assert bench.BenchParams(n_prompt=512, n_gen=128).n_ctx_needed() == 768
    assert bench.BenchParams(n_prompt=0, n_gen=128, depth=4096).n_ctx_needed() >= 4096 + 129


def test_random_prompt_is_reproducible_and_in_range() -> None:
    a = bench.random_prompt(100, 50, seed=3)
    assert a == bench.random_prompt(100, 50, seed=3)
    assert all(4 <= t < 50 for t in a)


def _round(decode: float, ttft_s: float) -> dict:
    return {"engine": "e", "params": {"n_prompt": 512}, "load_ms": 10.0, "peak_rss_mb": 100.0,
            "rss_baseline_mb": 20.0, "extra": {}, "samples": {"ttft_s": [ttft_s],
                                                               "decode_tok_s": [decode]}}


def test_merge_rounds_takes_medians_and_skips_failures() -> None:
    rounds = [_round(10, 1.0), _round(30, 2.0), _round(20, 4.0), {"error": "boom"}]
    m = run_bench.merge_rounds(rounds)
    assert m["decode_tok_s"] == 20
    assert m["ttft_ms"] == 2000
    assert m["prefill_tok_s"] == 256
    assert m["rounds"] == 3 and m["failed_rounds"] == 1


def test_reports_are_written(tmp_path: Path) -> None:
    eng = run_bench.merge_rounds([_round(20, 1.0)])
    results = {
        "date": "d", "command": "c", "notes": [],
        "machine": {"host": "h", "cpu": "cpu", "cores": 2},
        "bandwidth": {"gbps": 20.0, "gbps_best": 25.0, "method": "m"},
        "params": {"threads": 2, "rounds": 1, "repeats": 1, "n_prompt": 512, "n_gen": 128,
                   "long_prompt": 0},
        "cases": [{"label": "M", "dtype": "q4_0", "roofline_tok_s": {"llama.cpp": 100.0},
                   "engines": {"edgert": dict(eng), "llama.cpp": dict(eng)}, "notes": []}],
    }
    rows = run_bench.build_rows(results)
    assert rows[0]["decode_vs_llama"] == 1.0
    assert rows[1]["pct_roofline"] == pytest.approx(20.0)
    md = run_bench.write_markdown(results, rows, tmp_path / "t.md")
    assert "| edgert | M | Q4_0 |" in md
    run_bench.write_plot(results, rows, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
