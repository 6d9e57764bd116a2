"""Builds edgert's native module with CMake (native/) and packages it with the Python code.

Metadata lives in pyproject.toml; this file only adds what setuptools cannot express there: the
CMake build of edgert._edgert, the Cython extension edgert.sensor._runtime (the sensor path's
runner and ring buffer), the `converters/` -> `edgert.converters` mapping, the shared
registry/header files copied into the package, and the C library for C/C++ users: libedgert
(`edgert/lib/libedgert.so.<ABI>`), `edgert/include/edgert.h`, a CMake package config
(`edgert/lib/cmake/edgert`, for find_package(edgert)) and a pkg-config file
(`edgert/lib/pkgconfig/edgert.pc`); `python -m edgert --cflags --libs` prints the flags.

The CMake-built binaries link libstdc++ and libgcc statically (EDGERT_STATIC_RUNTIME) and the
Cython extension is plain C, so the wheel depends on glibc alone and `auditwheel repair` accepts it as manylinux; every ISA-specific kernel
is chosen at run time, so nothing beyond x86-64 baseline is needed to load it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "native"


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: Path) -> None:
        super().__init__(name, sources=[])
        self.sourcedir = sourcedir


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            # the Cython extension: setuptools' own compile with the interpreter's flags, which
            # target the x86-64 baseline (never -march=native: the wheel runs on any x86-64)
            super().build_extension(ext)
            return
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "native"
        build_dir.mkdir(parents=True, exist_ok=True)

        import pybind11
        cmake = shutil.which("cmake") or "cmake"
        ninja = shutil.which("ninja")
        tools = {"python": sys.executable, "cmake": cmake, "ninja": ninja,
                 "pybind11": pybind11.get_cmake_dir()}
        self._drop_stale_cache(build_dir, tools)

        args = [
            cmake, "-S", str(ext.sourcedir), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DEDGERT_BUILD_PYTHON=ON",
            "-DEDGERT_BUILD_TESTS=OFF",
            "-DEDGERT_STATIC_RUNTIME=ON",
            f"-DEDGERT_C_LIBRARY_DIR={build_dir / 'clib'}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
        ]
        if ninja and not (build_dir / "Makefile").exists():
            args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.run(args, check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--target", "_edgert", "edgert", "-j", jobs],
                       check=True)
        self._install_c_library(build_dir / "clib", out_dir)

    @staticmethod
    def _install_c_library(clib_dir: Path, package_dir: Path) -> None:
        """libedgert + edgert.h + CMake config + pkg-config file inside the package. The library
        is shipped once, under its SONAME (a wheel cannot hold symlinks); the config files point
        at it by file name, so nothing needs a `libedgert.so` link."""
        abi = _abi_version()
        soname = f"libedgert.so.{abi}"
        real = max(clib_dir.glob("libedgert.so.*"), key=lambda p: len(p.name))  # the versioned file
        lib, inc = package_dir / "lib", package_dir / "include"
        for d in (lib / "cmake" / "edgert", lib / "pkgconfig", inc):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, lib / soname)
        shutil.copyfile(NATIVE / "include" / "edgert.h", inc / "edgert.h")
        version = _project_version()
        (lib / "cmake" / "edgert" / "edgertConfig.cmake").write_text(
            (NATIVE / "packaging" / "edgertConfig.cmake.in").read_text()
            .replace("@SONAME@", soname).replace("@VERSION@", version))
        (lib / "cmake" / "edgert" / "edgertConfigVersion.cmake").write_text(
            (NATIVE / "packaging" / "edgertConfigVersion.cmake.in").read_text()
            .replace("@VERSION@", version).replace("@ABI@", str(abi)))
        (lib / "pkgconfig" / "edgert.pc").write_text(
            (NATIVE / "packaging" / "edgert.pc.in").read_text()
            .replace("@SONAME@", soname).replace("@VERSION@", version))

    @staticmethod
    def _drop_stale_cache(build_dir: Path, tools: dict[str, str | None]) -> None:
        # pip builds in a throw-away environment, so the cmake/ninja/pybind11 paths a previous
        # configure cached may no longer exist. Object files stay, so unchanged sources still
        # skip recompilation.
        stamp = build_dir / "edgert-tools.json"
        key = hashlib.sha256(json.dumps(tools, sort_keys=True).encode()).hexdigest()
        if stamp.exists() and stamp.read_text() == key:
            return
        (build_dir / "CMakeCache.txt").unlink(missing_ok=True)
        shutil.rmtree(build_dir / "CMakeFiles", ignore_errors=True)
        stamp.write_text(key)


def _abi_version() -> int:
    for line in (NATIVE / "include" / "edgert.h").read_text().splitlines():
        if line.startswith("#define EDGERT_ABI_VERSION"):
            return int(line.split()[2])
    raise RuntimeError("EDGERT_ABI_VERSION not found in edgert.h")


def _project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise RuntimeError("version not found in pyproject.toml")


def sensor_extensions() -> list[Extension]:
    from Cython.Build import cythonize
    ext = Extension("edgert.sensor._runtime", ["edgert/sensor/_runtime.pyx"],
                    extra_compile_args=["-O2"])
    return cythonize([ext], language_level=3, quiet=True,
                     build_dir=str(Path("build") / "cython"))


converter_packages = ["edgert.converters" + ("." + p if p else "")
                      for p in [""] + find_packages("converters")]

setup(
    packages=["edgert", "edgert.server", "edgert.sensor"] + converter_packages,
    package_dir={"edgert": "edgert", "edgert.converters": "converters"},
    ext_modules=[CMakeExtension("edgert._edgert", NATIVE)] + sensor_extensions(),
    package_data={"edgert.converters": ["*.def"]},
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
