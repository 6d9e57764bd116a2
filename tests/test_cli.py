"""The `edgert` command, run as a user runs it (a subprocess, outside the source tree so the
installed package is the one under test): convert, run, chat from a pipe, info, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STORIES_HF = REPO.parent / "shared" / "models" / "stories260K" / "hf"


def edgert(*args: str, cwd: Path, stdin: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgert", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = shutil.which("edgert", path=str(Path(sys.executable).parent)) or shutil.which("edgert")
    assert script, "pip install . should put an `edgert` script next to python"
    out = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("convert", "run", "chat", "info", "bench"):
        assert command in out.stdout


def test_convert_then_info(tmp_path: Path) -> None:
    out_file = tmp_path / "stories.edgt"
    r = edgert("convert", str(STORIES_HF), "-o", str(out_file), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out_file.stat().st_size > 1_000_000
    r = edgert("info", str(out_file), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    config = json.loads((STORIES_HF / "config.json").read_text())
    assert report["info"]["vocab_size"] == config["vocab_size"]
    assert report["info"]["num_layers"] == config["num_hidden_layers"]
    assert sum(report["tensor_types"].values()) > 0
    assert report["isa"] in report["available_isas"].split(",")
    assert report["provenance"]["source_format"]


def test_info_text_names_the_isa_and_verifies(stories_edgt: Path, tmp_path: Path) -> None:
    r = edgert("info", str(stories_edgt), "--verify", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ISA" in r.stdout and "verified" in r.stdout
    assert "vocab_size=512" in r.stdout


def test_run_streams_the_greedy_continuation(stories_edgt: Path, tmp_path: Path) -> None:
    r = edgert("run", str(stories_edgt), "Once upon a time", "-n", "12", "--threads", "2",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(", there was a little girl named Lily")
    sampled = [edgert("run", str(stories_edgt), "Once upon a time", "-n", "20", "--temp", "1",
                      "--seed", seed, cwd=tmp_path).stdout for seed in ("5", "5", "6")]
    assert sampled[0] == sampled[1] != sampled[2]


def test_chat_reads_piped_lines(smollm2_edgt: Path, tmp_path: Path) -> None:
    lines = "Hello!\n/reset\nWhat is the capital of France? Answer in one sentence.\n/exit\n" \
            "this line is never read\n"
    # --temp 0: chat samples by default (the model's generation_config, else llama.cpp's).
    r = edgert("chat", str(smollm2_edgt), "-n", "24", "--ctx", "512", "--temp", "0", cwd=tmp_path,
               stdin=lines)
    assert r.returncode == 0, r.stderr
    answers = r.stdout.strip().split("\n")
    assert len(answers) >= 2
    assert answers[-1].startswith("The capital of France is Paris.")
    assert "reset" in r.stderr


def test_chat_on_a_model_without_template_fails_cleanly(stories_edgt: Path, tmp_path: Path) -> None:
    r = edgert("chat", str(stories_edgt), cwd=tmp_path, stdin="hi\n")
    assert r.returncode == 1
    assert "chat template" in r.stderr and "Traceback" not in r.stderr


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.edgt"
    r = edgert("run", str(missing), "hi", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and str(missing) in r.stderr
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.edgt"
    bad.write_bytes(b"EDGT" + bytes(100))
    r = edgert("info", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("edgert: error:")
    r = edgert("run", str(missing), "hi", cwd=tmp_path, env={"EDGERT_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_context_overflow_is_reported(stories_edgt: Path, tmp_path: Path) -> None:
    r = edgert("run", str(stories_edgt), "Once upon a time " * 20, "--ctx", "16", cwd=tmp_path)
    assert r.returncode == 1
    assert "n_ctx=16" in r.stderr and "Traceback" not in r.stderr


def test_bench_is_wired_in(tmp_path: Path) -> None:
    pytest.importorskip("edgert.bench", reason="the benchmark module is not part of this build")
    r = edgert("bench", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
