"""The native tree on its own, as a C/C++ user builds it: CMake configure + build with the native
tests on, ctest, and the C example program driving libedgert through edgert.h alone (its ids must
equal the Python binding's). Then the same suite under sanitizers, where any report fails:
every ctest test under AddressSanitizer + UndefinedBehaviorSanitizer (the clang build that
fuzz/native/run.sh makes and the fuzz targets share), and the tests that run threads under
ThreadSanitizer. A deliberate bug per sanitizer (native/tests/sanitizer_canary.cpp) proves each
build fails on a report instead of printing and passing."""
from __future__ import annotations

import os
import platform
import re
import shutil
import struct
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


def test_c_example_runs_a_pruned_model_with_uneven_widths(release_build: Path, tmp_path: Path) -> None:
    """A structurally pruned model (per-layer FFN widths and KV heads, docs/format.md) through the
    C API alone gives the Python binding's ids (tests/test_pruned_widths.py checks its logits)."""
    import torch

    from conftest import STORIES
    from converters.compress import prune
    from converters.compress.model_desc import from_source
    from converters.compress.write import write_desc
    desc = from_source(STORIES / "hf")
    ffn = [torch.arange(0, 172, 2), torch.arange(100), torch.arange(172), torch.arange(50, 172), torch.arange(30)]
    groups = [torch.tensor([0, 3]), torch.tensor([1]), torch.arange(4), torch.tensor([2, 3]), torch.tensor([0, 1, 2])]
    path = write_desc(prune.apply(desc, ffn, groups, []), tmp_path / "pruned.edgt", compression={})
    prompt = [1, 403, 407, 261, 378]
    with LLM(path, n_ctx=128, n_threads=1) as llm:
        expected = llm.generate_ids(prompt, 16)
    assert example_ids(release_build, path, 16, prompt) == expected


def test_load_peak_rss_is_within_the_documented_bound(release_build: Path, smollm2_edgt: Path) -> None:
    """docs/security.md: a load's peak RSS growth <= file + packed copies + 16 x (metadata +
    table) + 16 MiB. load_cost loads once per process and reports VmHWM growth."""
    head = smollm2_edgt.read_bytes()[:64]
    meta_size, _, table_size = struct.unpack_from("<QQQ", head, 16)
    for verify in ("0", "1"):
        r = subprocess.run([str(release_build / "load_cost"), str(smollm2_edgt), verify],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(r"file (\d+) bytes, packed copies (\d+) bytes; peak RSS \d+ KiB \(\+(\d+) KiB", r.stdout)
        assert m, r.stdout
        file_size, packed, growth = int(m.group(1)), int(m.group(2)), int(m.group(3)) * 1024
        bound = file_size + packed + 16 * (meta_size + table_size) + (16 << 20)
        assert growth <= bound, f"verify={verify}: peak RSS grew {growth} bytes, bound {bound}"
        # Not vacuous: the load did map and touch the file.
        assert growth >= file_size // 2, r.stdout


SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
                 "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"}
# The ctest tests that run threads (thread pool, multi-threaded matmul and attention through the
# forward pass, per-thread last error). test_kernels_isa also runs its driver on 2 and 3 threads,
# but takes minutes under TSan; the same pool and driver run in test_forward.
THREADED_TESTS = ("test_kernels_ref", "test_api_errors", "test_forward", "test_kv_cache")


def ctest_names(build_dir: Path) -> list[str]:
    listed = subprocess.run(["ctest", "--test-dir", str(build_dir), "-N"],
                            capture_output=True, text=True, check=True).stdout
    return re.findall(r"Test\s+#\d+: (\S+)", listed)


def canary_fails(build_dir: Path, bug: str, report: str) -> None:
    exe = next(build_dir.rglob("sanitizer_canary"), None)
    assert exe is not None, f"sanitizer_canary was not built in {build_dir}"
    r = subprocess.run([str(exe), bug], capture_output=True, text=True,
                       env={**os.environ, **SANITIZER_ENV})
    assert r.returncode != 0 and report in r.stderr, (
        f"a deliberate {bug} did not fail the sanitized build (exit {r.returncode}):\n{r.stderr[-2000:]}")


@pytest.fixture(scope="module")
def asan_build() -> Path:
    """The clang ASan+UBSan build of fuzz/native (the native tree and its tests, plus the fuzz
    targets), in run.sh's cached build dir, so tests/test_fuzz_native.py reuses it."""
    r = subprocess.run([str(REPO / "fuzz" / "native" / "run.sh"), "--build-only", "--jobs", JOBS],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return Path(os.environ.get("EDGERT_FUZZ_BUILD", REPO / "build" / "fuzz-native"))


def test_every_ctest_passes_under_asan_and_ubsan(asan_build: Path, release_build: Path,
                                                 stories_edgt: Path) -> None:
    # Every test of the plain build, none left out.
    assert sorted(ctest_names(asan_build)) == sorted(ctest_names(release_build))
    canary_fails(asan_build, "int-overflow", "runtime error")
    canary_fails(asan_build, "float-cast", "runtime error")
    canary_fails(asan_build, "heap-overflow", "heap-buffer-overflow")
    # test_kernels_isa runs its trimmed matrix here (long rows: one profile, 37 rows, 1/7/65 tokens;
    # every type, table, layout, tail and extreme profile still compared): the full matrix takes 7
    # of CI's minutes under ASan, and test_ctest_passes runs it whole on the release build.
    run_ctest(asan_build, {**SANITIZER_ENV, "EDGERT_KERNEL_TEST_EMULATED": "1"})
    exe_dir = asan_build / "native"
    assert len(example_ids(exe_dir, stories_edgt, 8, [1, 403, 407, 261, 378], SANITIZER_ENV)) == 8


def test_threaded_tests_pass_under_tsan(tmp_path: Path, stories_edgt: Path) -> None:
    """THREADED_TESTS, then edgert.h's threading contract on a real model (test_threads.c):
    several contexts on one fresh model, on several threads at once, each tokenizing, generating
    text and detokenizing through the C API (so the tokenizer's build-on-first-use races too).
    Every thread's output must equal the single-threaded output."""
    build = tmp_path / "native-tsan"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(NATIVE), "-B", str(build), *generator,
                    "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DEDGERT_TSAN=ON",
                    "-DEDGERT_BUILD_TESTS=ON", "-DEDGERT_BUILD_PYTHON=OFF"],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(["nice", "cmake", "--build", str(build), "-j", JOBS, "--target",
                        *THREADED_TESTS, "test_threads", "sanitizer_canary"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    canary_fails(build, "data-race", "ThreadSanitizer: data race")
    r = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure", "-j", JOBS,
                        "-R", "^(" + "|".join(THREADED_TESTS) + ")$"],
                       capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV})
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"tests passed out of {len(THREADED_TESTS)}" in r.stdout, r.stdout
    r = subprocess.run([str(build / "test_threads"), str(stories_edgt), "4", "12"],
                       capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV}, timeout=600)
    assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stdout + r.stderr[-6000:]
    assert "4 threads agree" in r.stdout, r.stdout
