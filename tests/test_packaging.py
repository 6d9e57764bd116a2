"""The wheel `pip` builds from this checkout: it must carry the compiled module, the converters
(as edgert.converters) with the shared tensor-name registry, the console script, and the C
library for C/C++ users (libedgert, edgert.h, CMake and pkg-config files); `auditwheel repair`
must accept it as manylinux; its native code must load on a baseline x86-64 CPU; and a C program
compiled against a fresh venv's installation must generate text from SmolLM2 with the chat
template."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France? Answer in one sentence."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(out), str(REPO)], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    wheels = list(out.glob("edgert-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        registry = whl.read("edgert/converters/llama_tensor_names.def").decode()
        entry_points = next(whl.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        header = whl.read("edgert/include/edgert.h").decode()
        pc = whl.read("edgert/lib/pkgconfig/edgert.pc").decode()
    assert any(n.startswith("edgert/_edgert") and n.endswith(".so") for n in names)
    # the sensor path: its Cython runtime is compiled into the wheel, its modules and the exporter
    assert any(n.startswith("edgert/sensor/_runtime") and n.endswith(".so") for n in names)
    for module in ("edgert/sensor/__init__.py", "edgert/sensor/compiler.py",
                   "edgert/sensor/ops.py", "edgert/sensor/cli.py", "edgert/onnx_export.py"):
        assert module in names, f"{module} missing from the wheel"
    for module in ("edgert/__init__.py", "edgert/errors.py", "edgert/llm.py", "edgert/model.py",
                   "edgert/cli.py", "edgert/converters/__init__.py", "edgert/converters/cli.py"):
        assert module in names, f"{module} missing from the wheel"
    assert registry == (REPO / "native/src/models/llama_tensor_names.def").read_text()
    assert "edgert = edgert.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "native/", "converters/")) for n in names)
    # the C library, once (no stray copies next to the Python module)
    abi = re.search(r"#define EDGERT_ABI_VERSION (\d+)", header).group(1)
    assert [n for n in names if "libedgert" in n] == [f"edgert/lib/libedgert.so.{abi}"]
    assert header == (REPO / "native/include/edgert.h").read_text()
    assert {"edgert/lib/cmake/edgert/edgertConfig.cmake",
            "edgert/lib/cmake/edgert/edgertConfigVersion.cmake"} <= names
    assert f"-l:libedgert.so.{abi}" in pc
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel carries no LICENSE"
    assert any(n.endswith(".dist-info/licenses/THIRD_PARTY_NOTICES.md") for n in names)


def test_auditwheel_accepts_the_wheel_as_manylinux(wheel: Path, tmp_path: Path) -> None:
    if platform.system() != "Linux":
        pytest.skip("manylinux is Linux only")
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True,
                          text=True)
    assert show.returncode == 0, show.stdout + show.stderr
    r = subprocess.run([sys.executable, "-m", "auditwheel", "repair", "-w", str(tmp_path), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, show.stdout + r.stdout + r.stderr
    print(show.stdout)  # the policy it meets (pytest -s shows it)
    repaired = list(tmp_path.glob("edgert-*manylinux*.whl"))
    assert repaired, (show.stdout, r.stdout, r.stderr)
    with zipfile.ZipFile(repaired[0]) as whl:  # nothing grafted: glibc is the only dependency
        assert not [n for n in whl.namelist() if n.startswith("edgert.libs/")]


def _needed(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def test_native_code_needs_glibc_only_and_loads_on_baseline_x86_64(wheel: Path, tmp_path: Path) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 check")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(tmp_path / "w")
    clib = list(tmp_path.glob("w/edgert/lib/libedgert.so.*"))
    # every native binary: the pybind11 module, the C library, the sensor path's Cython runtime
    libs = [*tmp_path.glob("w/edgert/_edgert*.so"), *clib, *tmp_path.glob("w/edgert/sensor/_runtime*.so")]
    assert len(libs) == 3 and len(clib) == 1, libs
    for lib in libs:
        needed = _needed(lib)
        assert not [n for n in needed if not re.match(r"lib(c|m|pthread|dl|rt)\.so\.\d|ld-linux", n)], needed
        notes = subprocess.run(["readelf", "-n", str(lib)], capture_output=True, text=True, check=True).stdout
        assert "x86 ISA needed" not in notes or "x86-64-baseline" in notes, notes
    # load the C library and run its dispatch on an emulated baseline CPU (no SSE3, no AVX)
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 not found: apt-get install qemu-user"
    prog = tmp_path / "isa.c"
    prog.write_text('#include <stdio.h>\n#include "edgert.h"\nint main(void){printf("%s %d\\n", '
                    'edgert_isa(), edgert_abi_version());return 0;}\n')
    lib = tmp_path / "w" / "edgert" / "lib"
    subprocess.run(["cc", str(prog), f"-I{tmp_path / 'w' / 'edgert' / 'include'}", f"-L{lib}",
                    f"-l:{clib[0].name}", f"-Wl,-rpath,{lib}", "-o", str(tmp_path / "isa")], check=True)
    r = subprocess.run([qemu, "-cpu", "qemu64", str(tmp_path / "isa")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["scalar", "2"], r.stdout + r.stderr
    # and the Python module, imported on its own (edgert/__init__ would import numpy, whose own
    # baseline is above qemu64's) by this interpreter on the same emulated CPU
    module = next(p for p in libs if p.name.startswith("_edgert"))
    load = ("import importlib.util as u\n"
            f"s = u.spec_from_file_location('_edgert', {str(module)!r})\n"
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.isa(), m.abi_version())")
    r = subprocess.run([qemu, "-cpu", "qemu64", os.path.realpath(sys.executable), "-S", "-c", load],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["scalar", "2"], r.stdout + r.stderr


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with nothing but the wheel (no dependencies: the C library needs none)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return py


def test_c_program_against_the_installed_wheel_chats_with_smollm2(fresh_venv: Path, tmp_path: Path,
                                                                  smollm2_edgt: Path) -> None:
    # cwd: not the checkout, whose edgert/ (no compiled parts) would shadow the installed one
    flags = subprocess.run([str(fresh_venv), "-m", "edgert", "--cflags", "--libs"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout.split()
    assert str(tmp_path) not in " ".join(flags) and "site-packages/edgert" in " ".join(flags)
    exe = tmp_path / "chat"
    subprocess.run(["cc", str(REPO / "native" / "examples" / "chat.c"), *flags, "-o", str(exe)], check=True)
    r = subprocess.run([str(exe), str(smollm2_edgt), QUESTION, "24"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "The capital of France is Paris.", r.stdout
    # python -c "import edgert; edgert.get_include()" agrees with the flags
    inc = subprocess.run([str(fresh_venv), "-c", "import edgert; print(edgert.get_include())"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert f"-I{inc}" in flags and (Path(inc) / "edgert.h").exists()


def test_cmake_find_package_and_pkg_config(fresh_venv: Path, tmp_path: Path, stories_edgt: Path) -> None:
    cmake_dir = subprocess.run([str(fresh_venv), "-m", "edgert", "--cmake-dir"], capture_output=True,
                               text=True, check=True, cwd=tmp_path).stdout.strip()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(use_edgert C)\nfind_package(edgert 0.1 REQUIRED)\n"
        f"add_executable(chat {REPO / 'native' / 'examples' / 'chat.c'})\n"
        "target_link_libraries(chat PRIVATE edgert::edgert)\n")
    subprocess.run(["cmake", "-S", str(proj), "-B", str(proj / "b"), f"-Dedgert_DIR={cmake_dir}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(proj / "b")], check=True, capture_output=True)
    r = subprocess.run([str(proj / "b" / "chat"), str(stories_edgt), "Once upon a time", "8", "--raw"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(", there was"), r.stdout + r.stderr
    if shutil.which("pkg-config"):
        pc_dir = subprocess.run([str(fresh_venv), "-m", "edgert", "--pkgconfig-dir"], capture_output=True,
                                text=True, check=True, cwd=tmp_path).stdout.strip()
        r = subprocess.run(["pkg-config", "--cflags", "--libs", "edgert"], capture_output=True, text=True,
                           env={**os.environ, "PKG_CONFIG_PATH": pc_dir}, check=True)
        assert "-l:libedgert.so." in r.stdout and "include" in r.stdout
