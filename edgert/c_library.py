"""Where the wheel keeps the C library for C/C++ users (libedgert, edgert.h, CMake and
pkg-config files), as numpy.get_include() / pybind11.get_include() do for theirs, and the compiler
flags `python -m edgert --cflags --libs` prints."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def get_include() -> str:
    """The directory holding edgert.h."""
    return str(_PKG / "include")


def get_lib() -> str:
    """The directory holding libedgert.so.<ABI> (and cmake/, pkgconfig/)."""
    return str(_PKG / "lib")


def get_cmake_dir() -> str:
    """For CMAKE_PREFIX_PATH or edgert_DIR: find_package(edgert) then edgert::edgert."""
    return str(_PKG / "lib" / "cmake" / "edgert")


def get_pkgconfig_dir() -> str:
    """For PKG_CONFIG_PATH: pkg-config --cflags --libs edgert."""
    return str(_PKG / "lib" / "pkgconfig")


def library_file() -> Path:
    libs = sorted(Path(get_lib()).glob("libedgert.so.*"))
    if not libs:
        raise FileNotFoundError(f"libedgert is not in {get_lib()}; this edgert was installed "
                                "without its C library (reinstall the wheel)")
    return libs[-1]


def cflags() -> str:
    return f"-I{get_include()}"


def libs() -> str:
    # -l:NAME links the file by name (the wheel has no libedgert.so symlink); the rpath lets the
    # program find it at run time without LD_LIBRARY_PATH.
    return f"-L{get_lib()} -l:{library_file().name} -Wl,-rpath,{get_lib()}"


FLAGS = {"--cflags": cflags, "--libs": libs, "--include-dir": get_include, "--lib-dir": get_lib,
         "--cmake-dir": get_cmake_dir, "--pkgconfig-dir": get_pkgconfig_dir}
