"""The arm64 side of the kernel layer: cross-build the kernel tests with aarch64-linux-gnu-g++ and
run them under qemu-aarch64 (-cpu max, so the baseline NEON, the SDOT and the SMMLA tables run).

Missing tools fail the test instead of skipping it: CI installs them (Debian packages
g++-aarch64-linux-gnu and qemu-user), and a silently skipped ARM check would hide a broken NEON
path. Only the kernel library and its two tests are built (native/cross/CMakeLists.txt), with
-j2, so the whole test stays around a minute or two on two cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CROSS_DIR = REPO / "native" / "cross"
SYSROOT = "/usr/aarch64-linux-gnu"
KERNEL_TESTS = ("test_kernels_ref", "test_kernels_isa", "dequant_rows")


def _require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install the Debian package {package} "
                    f"(apt-get install {package}); CI's .ci/run does this", pytrace=False)
    return path


@pytest.fixture(scope="module")
def arm_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    _require_tool("qemu-aarch64", "qemu-user")
    cmake = _require_tool("cmake", "cmake")
    if not Path(SYSROOT, "lib").is_dir():
        pytest.fail(f"{SYSROOT}/lib missing: the aarch64 C++ runtime comes with g++-aarch64-linux-gnu",
                    pytrace=False)
    build = tmp_path_factory.mktemp("arm-kernels")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = [cmake, "-S", str(CROSS_DIR), "-B", str(build), *generator,
                 f"-DCMAKE_TOOLCHAIN_FILE={CROSS_DIR / 'aarch64-toolchain.cmake'}",
                 "-DCMAKE_BUILD_TYPE=Release"]
    _run(configure, timeout=120)
    _run([cmake, "--build", str(build), "-j", "2", "--target", *KERNEL_TESTS], timeout=300)
    return build


def _run(cmd: list[str], timeout: int, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-6000:]}"
    return out


def _qemu(binary: Path, env_extra: dict[str, str] | None = None, timeout: int = 240) -> str:
    env = dict(os.environ, **(env_extra or {}))
    return _run(["qemu-aarch64", "-cpu", "max", "-L", SYSROOT, str(binary)], timeout=timeout, env=env)


def test_binaries_are_aarch64(arm_build: Path) -> None:
    # Guards against a toolchain file that silently fell back to the host compiler.
    header = (arm_build / "test_kernels_isa").read_bytes()[:20]
    assert header[:4] == b"\x7fELF", "not an ELF file"
    e_machine = int.from_bytes(header[18:20], "little")
    assert e_machine == 183, f"e_machine {e_machine}, expected 183 (EM_AARCH64)"


def test_scalar_reference_on_arm(arm_build: Path) -> None:
    out = _qemu(arm_build / "test_kernels_ref")
    assert "all checks passed" in out


def test_neon_kernels_match_scalar_on_arm(arm_build: Path) -> None:
    # Emulated: long rows with one profile and three token counts (see emulated() in the test);
    # every type, table, layout, tail and extreme profile is still compared.
    # 93 s of CPU (3.8 min wall at loadavg 11 on 2 cores): the timeout leaves room for a busy machine.
    out = _qemu(arm_build / "test_kernels_isa", {"EDGERT_KERNEL_TEST_EMULATED": "1"}, timeout=600)
    # qemu -cpu max advertises ASIMDDP and I8MM, so all three NEON tables must have been compared.
    assert "testing neoni8mm against scalar" in out, out
    assert "testing neondot against scalar" in out, out
    assert "testing neon against scalar" in out, out
    assert "all checks passed" in out


def test_runtime_dequantizer_equals_gguf_on_arm(arm_build: Path, tmp_path: Path) -> None:
    # AArch64 fuses multiply-adds by default; the dequantizer must still round as numpy does.
    from dequant_check import check_dequant_rows

    def run(cmd):
        _run(["qemu-aarch64", "-cpu", "max", "-L", SYSROOT, *cmd], timeout=120)
    assert check_dequant_rows(arm_build / "dequant_rows", tmp_path, run) > 100_000


def test_isa_override_on_arm(arm_build: Path) -> None:
    # EDGERT_ISA picks the table at start-up; an unknown name falls back instead of dying.
    out = _qemu(arm_build / "test_kernels_ref", {"EDGERT_ISA": "neon"})
    assert "all checks passed" in out
    out = _qemu(arm_build / "test_kernels_ref", {"EDGERT_ISA": "avx2"})
    assert "EDGERT_ISA=avx2 is not available" in out
