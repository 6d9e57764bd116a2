"""Builds edgert's native module with CMake (native/) and packages it with the Python code.

Metadata lives in pyproject.toml; this file only adds what setuptools cannot express there: the
CMake build of edgert._edgert, the Cython extension edgert.sensor._runtime (the sensor path's
runner and ring buffer), the `converters/` -> `edgert.converters` mapping, and the shared
registry/header files copied into the package.
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
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
        ]
        if ninja and not (build_dir / "Makefile").exists():
            args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.run(args, check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--target", "_edgert", "-j", jobs],
                       check=True)

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


def sensor_extensions() -> list[Extension]:
    from Cython.Build import cythonize
    ext = Extension("edgert.sensor._runtime", ["edgert/sensor/_runtime.pyx"],
                    extra_compile_args=["-O2"])
    return cythonize([ext], language_level=3, quiet=True,
                     build_dir=str(Path("build") / "cython"))


converter_packages = ["edgert.converters" + ("." + p if p else "")
                      for p in [""] + find_packages("converters")]

setup(
    packages=["edgert", "edgert.sensor"] + converter_packages,
    package_dir={"edgert": "edgert", "edgert.converters": "converters"},
    ext_modules=[CMakeExtension("edgert._edgert", NATIVE)] + sensor_extensions(),
    package_data={"edgert.converters": ["*.def"]},
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
