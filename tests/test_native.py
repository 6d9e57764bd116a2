"""The native tree on its own, as a C/C++ user builds it: CMake configure + build with the native
tests on, ctest, the same under address/undefined sanitizers, and the C example program driving
libedgert through edgert.h alone (its ids must equal the Python binding's)."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgert import LLM

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "native"
JOBS = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")

pytestmark = pytest.mark.slow


def build_native(build_dir: Path, *options: str) -> Path:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(NATIVE), "-B", str(build_dir), *generator,
                    "-DEDGERT_BUILD_TESTS=ON", "-DEDGERT_BUILD_PYTHON=OFF", *options],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(["nice", "cmake", "--build", str(build_dir), "-j", JOBS],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return build_dir


def run_ctest(build_dir: Path, env: dict[str, str] | None = None) -> None:
    listed = subprocess.run(["ctest", "--test-dir", str(build_dir), "-N"],
                            capture_output=True, text=True, check=True).stdout
    n_tests = int(re.search(r"Total Tests:\s*(\d+)", listed).group(1))
    assert n_tests > 0, "the native build registered no ctest tests"
    r = subprocess.run(["ctest", "--test-dir", str(build_dir), "--output-on-failure", "-j", JOBS],
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def example_ids(build_dir: Path, model: Path, n_new: int, prompt: list[int],
                env: dict[str, str] | None = None) -> list[int]:
    exe = build_dir / "generate_ids"
    assert exe.exists(), "the C example generate_ids was not built"
    r = subprocess.run([str(exe), str(model), str(n_new), *map(str, prompt)], capture_output=True,
                       text=True, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    return [int(t) for t in r.stdout.split()]


@pytest.fixture(scope="module")
def release_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_native(tmp_path_factory.mktemp("native-release"), "-DCMAKE_BUILD_TYPE=Release")


def test_ctest_passes(release_build: Path) -> None:
    run_ctest(release_build)


def test_runtime_dequantizer_equals_gguf(release_build: Path, tmp_path: Path) -> None:
    """Issue 11's proof for every quantized type the runtime reads: its values (row_to_float, the
    exact path and embedding lookups) equal gguf.quants.dequantize's bit for bit."""
    from dequant_check import check_dequant_rows
    assert check_dequant_rows(release_build / "dequant_rows", tmp_path) > 100_000


def test_amx_kernel_on_the_tile_model_and_on_real_tiles(release_build: Path) -> None:
    """Issue 5's AMX proof. The kernel always runs on a scalar model of the tile unit (any AVX-512
    CPU); on real tiles only where the CPU and OS offer them, and the skip then says why."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("AMX is x86-64 only")
    r = subprocess.run([str(release_build / "test_kernels_amx")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    model = re.search(r"(\d+) tile products checked", r.stdout)
    assert model or "SKIP amx tile model" in r.stdout, r.stdout
    assert model is None or int(model.group(1)) > 0
    real = re.search(r"SKIP amx real tiles: (.*)", r.stdout)
    if real:
        pytest.skip(f"AMX on real tiles: {real.group(1)} (the tile-model half ran and passed)")


def test_shared_library_exports_only_the_c_api(release_build: Path) -> None:
    lib = next(release_build.glob("libedgert.so*"), None)
    assert lib is not None, "libedgert.so was not built"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                             text=True, check=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert "edgert_model_load" in exported and "edgert_generate" in exported
    assert not [s for s in exported if not s.startswith("edgert_")]


def test_c_example_matches_the_python_binding(release_build: Path, stories_edgt: Path) -> None:
    with LLM(stories_edgt) as llm:
        prompt = llm.tokenize("Once upon a time")
        expected = llm.generate_ids(prompt, 24)
    assert example_ids(release_build, stories_edgt, 24, prompt) == expected


def test_ctest_and_example_pass_under_sanitizers(tmp_path: Path, stories_edgt: Path) -> None:
    build = build_native(tmp_path / "native-asan", "-DCMAKE_BUILD_TYPE=Debug",
                         "-DEDGERT_SANITIZE=ON")
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    run_ctest(build, env)
    assert len(example_ids(build, stories_edgt, 8, [1, 403, 407, 261, 378], env)) == 8
