"""A streaming safetensors reader: parses the JSON header and hands out each tensor as a
zero-copy view of a read-only memory map, so converting a large checkpoint touches one tensor at a
time and memory stays flat. bf16 is returned as raw bytes (numpy has no bfloat16)."""
from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError

from . import dtypes
from .source_checks import dict_field, field_error, int_field, is_text, list_field, show, str_field

_DTYPES = {"F32": dtypes.F32, "F16": dtypes.F16, "BF16": dtypes.BF16}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class SafetensorsFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "rb")
        try:
            size = self.path.stat().st_size
            if size < 8:
                raise ModelFormatError(f"{self.path}: truncated safetensors file")
            (n,) = struct.unpack("<Q", self._f.read(8))
            if n > min(size - 8, _MAX_HEADER):
                raise ModelFormatError(f"{self.path}: safetensors header length {n} is out of range")
            try:
                header = json.loads(self._f.read(n))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise ModelFormatError(f"{self.path}: safetensors header is not JSON ({e})") from None
            if not isinstance(header, dict):
                raise ModelFormatError(f"{self.path}: safetensors header is not a JSON object")
            self._base = 8 + n
            self.entries: dict[str, SafetensorsEntry] = {}
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                self.entries[name] = self._entry(name, info, size)
            self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if size > self._base else None
        except BaseException:
            self._f.close()
            raise

    def _entry(self, name: str, info: Any, size: int) -> SafetensorsEntry:
        """One header entry, every field checked: dtype a string, shape a list of dims, data_offsets
        two ints inside the file, and (for the dtypes edgert reads) a size that matches the shape."""
        where = f"{self.path}: tensor {show(name)}"
        if not is_text(name):
            raise ModelFormatError(f"{where}: the name is not valid UTF-8")
        info = dict_field(self.path, f"tensor {show(name)}", info)
        dtype = str_field(self.path, f"{name}.dtype", info.get("dtype"))
        shape = tuple(list_field(self.path, f"{name}.shape", info.get("shape"),
                                 lambda f, v: int_field(self.path, f, v, 0, 1 << 40), max_len=8))
        offsets = list_field(self.path, f"{name}.data_offsets", info.get("data_offsets"),
                             lambda f, v: int_field(self.path, f, v, 0, size), max_len=2)
        if len(offsets) != 2:
            raise field_error(self.path, f"{name}.data_offsets", offsets, "must be [begin, end]")
        begin, end = offsets
        if begin > end or self._base + end > size:
            raise ModelFormatError(f"{where} lies outside the file (truncated?)")
        if dtype in _DTYPES:
            want = _DTYPES[dtype].nbytes(shape)
            if end - begin != want:
                raise ModelFormatError(f"{where}: {end - begin} bytes do not match {dtype} {list(shape)}")
        return SafetensorsEntry(name, dtype, shape, begin, end)

    def dtype_of(self, name: str) -> dtypes.DType:
        e = self.entries[name]
        if e.dtype not in _DTYPES:
            raise UnsupportedModelError(f"{self.path}: tensor {name} has dtype {e.dtype}; supported: F32, F16, BF16")
        return _DTYPES[e.dtype]

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes (flat uint8 view of the map, no copy), checked against its shape."""
        e = self.entries[name]
        dt = self.dtype_of(name)
        if e.end - e.begin != dt.nbytes(e.shape):
            raise ModelFormatError(f"{self.path}: tensor {name}: {e.end - e.begin} bytes do not match {e.dtype} {e.shape}")
        if e.end == e.begin:
            return np.zeros(0, np.uint8)
        return np.frombuffer(self._mm, dtype=np.uint8, count=e.end - e.begin, offset=self._base + e.begin)

    def close(self) -> None:
        self._f.close()  # the map stays valid while views of it are alive
