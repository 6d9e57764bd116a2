"""edgert.h's threading contract under ThreadSanitizer: several contexts on one shared model, on
several threads at once, each tokenizing, generating text and detokenizing through the C API
(native/tests/test_threads.c). The threads start together on a fresh model, so the tokenizer's
build-on-first-use races as well. Output must equal single-threaded output, and TSan must report
nothing."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JOBS = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")


@pytest.mark.slow
def test_contexts_on_threads_are_tsan_clean(tmp_path: Path, stories_edgt: Path) -> None:
    build = tmp_path / "tsan"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(REPO / "native"), "-B", str(build), *generator,
                    "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DEDGERT_SANITIZE_THREAD=ON",
                    "-DEDGERT_BUILD_TESTS=ON", "-DEDGERT_BUILD_PYTHON=OFF"],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(["nice", "cmake", "--build", str(build), "-j", JOBS, "--target", "test_threads"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1"}
    r = subprocess.run([str(build / "test_threads"), str(stories_edgt), "4", "12"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stdout + r.stderr[-6000:]
    assert "4 threads agree" in r.stdout
