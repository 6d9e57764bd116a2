"""Cross-builds the KV-attention tests for AArch64 and runs them under qemu, so the NEON +
dotprod loop is checked against attention_ref and the scalar loop on an x86 machine.

Needs g++-aarch64-linux-gnu and qemu-user (qemu-aarch64); CI installs them, so a missing tool is
a failure, not a skip. Only the NEON file gets -march=armv8.2-a+dotprod, as in attention.cmake.
The attention files are linked with dtypes/cpu_features and a current_isa() stub instead of the
whole kernel layer, so this check depends on nothing outside the attention code.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "native" / "src"
ATT = SRC / "kernels" / "attention"
NATIVE_TESTS = REPO / "native" / "tests"
CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
NEON_FLAGS = ["-march=armv8.2-a+dotprod"]

LIB_SOURCES = [
    (ATT / "kv_rows.cpp", []),
    (ATT / "kv_hadamard.cpp", []),
    (ATT / "attention_ref.cpp", []),
    (ATT / "attention_dispatch.cpp", []),
    (ATT / "attention_scalar.cpp", []),
    (ATT / "attention_neon.cpp", NEON_FLAGS),
    (SRC / "kernels" / "dtypes.cpp", []),
    (SRC / "kernels" / "cpu_features.cpp", []),
    (NATIVE_TESTS / "test_kv_attention_isa_stub.cpp", []),
]
TESTS = ["test_kv_attention_rows", "test_kv_attention"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install it (apt-get install g++-aarch64-linux-gnu "
                    f"qemu-user)")
    return path


def _compile(cxx: str, src: Path, flags: list[str], obj: Path) -> None:
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-I", str(SRC), "-I", str(NATIVE_TESTS), *flags,
           "-c", str(src), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def arm_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cxx = _tool(CXX)
    _tool(QEMU)
    out = tmp_path_factory.mktemp("kv_arm")
    jobs = int(os.environ.get("EDGERT_BUILD_JOBS", "2"))
    units = LIB_SOURCES + [(NATIVE_TESTS / f"{t}.cpp", []) for t in TESTS]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda u: _compile(cxx, u[0], u[1], out / (u[0].stem + ".o")), units))
    lib = [str(out / (s.stem + ".o")) for s, _ in LIB_SOURCES]
    for t in TESTS:
        proc = subprocess.run([cxx, str(out / f"{t}.o"), *lib, "-o", str(out / t), "-lpthread"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _run_qemu(exe: Path, *args: str) -> str:
    proc = subprocess.run([QEMU, "-cpu", "max", "-L", SYSROOT, str(exe), *args],
                          capture_output=True, text=True, timeout=150)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_rows_round_trip_on_arm(arm_build: Path) -> None:
    out = _run_qemu(arm_build / "test_kv_attention_rows")
    assert "all checks passed" in out


def test_neon_attention_matches_reference(arm_build: Path) -> None:
    # --require=neon fails the run if the NEON loop was not available (e.g. no dotprod).
    out = _run_qemu(arm_build / "test_kv_attention", "--require=neon")
    assert "neon" in out.split("ISAs tested:")[1].splitlines()[0]
    assert "all checks passed" in out
