"""The atheris fuzz targets (fuzz/python) run for a bounded number of executions each, from their
checked-in seed corpora, and find nothing: no exception but edgert's typed errors, no input over
10 s, no memory beyond the harness's bound. The table of executions and findings goes to the
test output. Deeper runs: fuzz/python/run.sh --seconds S, or fuzz/run_all.sh --minutes N."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "fuzz" / "python" / "run.sh"
RUNS_PER_TARGET = 300  # ~15 s for all six targets on 2 idle cores
TARGETS = ("gguf", "llama2c", "hf_config", "safetensors", "tokenizer_json", "chat_template")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FUZZ_FINDINGS": str(tmp_path / "findings"), "TMPDIR": str(tmp_path)}
    return subprocess.run([str(RUN), *args], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)


@pytest.mark.slow
def test_python_fuzz_targets_find_nothing(tmp_path: Path, capsys) -> None:
    r = _run(tmp_path, "--runs", str(RUNS_PER_TARGET), "--", "-seed=1")
    with capsys.disabled():
        print("\n" + r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    rows = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^(\w+)\s+(\d+)\s+[\d.]+\s+(\d+)$", r.stdout, re.M)}
    assert set(rows) == set(TARGETS), r.stdout
    for target, (executions, findings) in rows.items():
        assert executions >= RUNS_PER_TARGET and findings == 0, (target, executions, findings)
    assert not list((tmp_path / "findings").iterdir())


def test_a_finding_is_reported_with_its_reproduction(tmp_path: Path) -> None:
    """The harness can fail: an input that breaks the typed-error contract is a finding, kept,
    reported with the command that reproduces it, and the run exits non-zero. (A regression
    input replayed without the fix would do the same; here a seed is made that the converter
    cannot accept silently: EDGERT_FUZZ_SELFTEST makes the harness raise on any input.)"""
    env_run = subprocess.run(
        [str(RUN), "--runs", "5", "llama2c", "--", "-seed=1"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "FUZZ_FINDINGS": str(tmp_path / "findings"), "TMPDIR": str(tmp_path),
             "EDGERT_FUZZ_SELFTEST": "1"}, cwd=tmp_path)
    assert env_run.returncode == 1, env_run.stdout
    assert re.search(r"^llama2c\s+\d+\s+[\d.]+\s+1$", env_run.stdout, re.M), env_run.stdout
    assert "reproduce: " in env_run.stdout and "fuzz_llama2c.py" in env_run.stdout
    crash = next((tmp_path / "findings").iterdir())
    assert crash.name.startswith("llama2c-crash-")
