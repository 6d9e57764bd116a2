"""A bounds-checked GGUF (v2/v3) reader: metadata key/values, tensor infos, and tensor bytes as
zero-copy views into a read-only memory map, so a converter touches one tensor at a time.

Every length, count and offset read from the file is checked against the bytes that remain before
it is used, so a truncated or corrupt file raises ModelFormatError instead of allocating wildly or
reading past the end. Only little-endian files are read (a big-endian one shows up as a huge version).
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgert.errors import ModelFormatError

from .source_checks import int_field

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types -> (struct code, numpy dtype) for the fixed-size scalars.
_SCALARS = {
    0: ("<B", np.uint8), 1: ("<b", np.int8), 2: ("<H", np.uint16), 3: ("<h", np.int16),
    4: ("<I", np.uint32), 5: ("<i", np.int32), 6: ("<f", np.float32), 7: ("<?", np.bool_),
    10: ("<Q", np.uint64), 11: ("<q", np.int64), 12: ("<d", np.float64),
}
_STRING, _ARRAY = 8, 9
# Arrays of arrays are legal GGUF; no real file nests them deeper than two. The bound keeps a
# hostile nesting from exhausting the recursion (each level also needs >= 12 bytes of file).
MAX_ARRAY_DEPTH = 8

# ggml_type -> (name, elements per block, bytes per block), for sizes and error messages.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}


def ggml_type_name(t: int) -> str:
    return GGML_TYPES[t][0] if t in GGML_TYPES else f"type {t}"


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    ggml_type: int
    dims: tuple[int, ...]   # GGUF order: innermost (contiguous) first
    offset: int             # relative to the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Outermost first, as numpy and the edgert format order dims."""
        return tuple(reversed(self.dims))


class GGUFFile:
    """An open GGUF file. Use as a context manager, or call close()."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            self._file.close()
            raise ModelFormatError(f"{self.path}: empty file, not a GGUF file")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = memoryview(self._mm)
        self._pos = 0
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- low-level cursor ------------------------------------------------------------------------
    def _fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {what} (at byte {self._pos}); the GGUF file is truncated "
                                "or corrupt")

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self._pos + n > len(self._buf):
            raise self._fail(f"{what} needs {n} bytes but only {len(self._buf) - self._pos} remain")

    def _scalar(self, code: str, what: str):
        n = struct.calcsize(code)
        self._need(n, what)
        (v,) = struct.unpack_from(code, self._buf, self._pos)
        self._pos += n
        return v

    def _string(self, what: str) -> str:
        n = self._scalar("<Q", what)
        self._need(n, what)
        raw = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # llama.cpp vocabularies may hold invalid UTF-8 pieces; keep them losslessly.
            return raw.decode("utf-8", errors="surrogateescape")

    def _value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self._scalar(_SCALARS[vtype][0], what)
        if vtype == _STRING:
            return self._string(what)
        if vtype == _ARRAY:
            itype = self._scalar("<I", what)
            count = self._scalar("<Q", what)
            if itype in _SCALARS:
                dt = np.dtype(_SCALARS[itype][1]).newbyteorder("<")
                self._need(count * dt.itemsize, what)
                arr = np.frombuffer(self._buf, dtype=dt, count=count, offset=self._pos).copy()
                self._pos += count * dt.itemsize
                return arr
            if itype == _STRING:
                # each string needs at least its 8-byte length, which bounds a corrupt count
                self._need(count * 8, what)
                return [self._string(what) for _ in range(count)]
            if itype == _ARRAY:
                if depth + 1 >= MAX_ARRAY_DEPTH:
                    raise self._fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
                self._need(count * 12, what)
                return [self._value(_ARRAY, what, depth + 1) for _ in range(count)]
            raise self._fail(f"{what}: unknown array item type {itype}")
        raise self._fail(f"{what}: unknown value type {vtype}")

    # -- structure -------------------------------------------------------------------------------
    def _parse(self) -> None:
        self._need(4, "magic")
        if bytes(self._buf[:4]) != GGUF_MAGIC:
            raise ModelFormatError(f"{self.path}: not a GGUF file (magic {bytes(self._buf[:4])!r})")
        self._pos = 4
        self.version = self._scalar("<I", "version")
        if self.version not in (2, 3):
            raise ModelFormatError(f"{self.path}: GGUF version {self.version} is not supported (need 2 or 3; "
                                   "a huge number means a big-endian file)")
        n_tensors = self._scalar("<Q", "tensor count")
        n_kv = self._scalar("<Q", "metadata count")
        # every key/value needs >= 12 bytes and every tensor info >= 24: bounds corrupt counts
        self._need(n_kv * 12 + n_tensors * 24, "metadata and tensor infos")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string("metadata key")
            vtype = self._scalar("<I", f"type of {key}")
            self.metadata[key] = self._value(vtype, key)
        self.alignment = int_field(self.path, "general.alignment",
                                   self.metadata.get("general.alignment", DEFAULT_ALIGNMENT), 1, 1 << 30)
        if self.alignment & (self.alignment - 1):
            raise self._fail(f"general.alignment {self.alignment} is not a power of two")
        infos = []
        for _ in range(n_tensors):
            name = self._string("tensor name")
            n_dims = self._scalar("<I", f"n_dims of {name}")
            if not 1 <= n_dims <= 4:
                raise self._fail(f"tensor {name}: n_dims {n_dims} outside 1..4")
            dims = tuple(self._scalar("<Q", f"dims of {name}") for _ in range(n_dims))
            gtype = self._scalar("<I", f"type of {name}")
            offset = self._scalar("<Q", f"offset of {name}")
            infos.append((name, gtype, dims, offset))
        self.data_offset = (self._pos + self.alignment - 1) // self.alignment * self.alignment
        self.tensors: dict[str, GGUFTensorInfo] = {}
        for name, gtype, dims, offset in infos:
            nbytes = self._tensor_nbytes(name, gtype, dims)
            if nbytes is not None and self.data_offset + offset + nbytes > len(self._buf):
                raise ModelFormatError(f"{self.path}: tensor {name} ends past the end of the file "
                                       "(the GGUF file is truncated)")
            if name in self.tensors:
                raise ModelFormatError(f"{self.path}: duplicate tensor {name}")
            self.tensors[name] = GGUFTensorInfo(name, gtype, dims, offset, nbytes if nbytes is not None else -1)

    def _tensor_nbytes(self, name: str, gtype: int, dims: tuple[int, ...]) -> int | None:
        if any(d < 1 for d in dims):
            raise ModelFormatError(f"{self.path}: tensor {name} has a zero dim {dims}")
        if gtype not in GGML_TYPES:
            return None  # unknown type: its size is unknown; a converter refuses it by name
        _, blk, blk_bytes = GGML_TYPES[gtype]
        if dims[0] % blk:
            raise ModelFormatError(f"{self.path}: tensor {name}: row of {dims[0]} is not a whole number of "
                                   f"{ggml_type_name(gtype)} blocks")
        n = 1
        for d in dims:
            n *= d
        return n // blk * blk_bytes

    # -- access ----------------------------------------------------------------------------------
    def tensor_bytes(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view of the map (no copy)."""
        info = self.tensors[name]
        if info.nbytes < 0:
            raise ModelFormatError(f"{self.path}: tensor {name} has unknown type {info.ggml_type}")
        start = self.data_offset + info.offset
        return np.frombuffer(self._buf, dtype=np.uint8, count=info.nbytes, offset=start)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def close(self) -> None:
        # views handed out keep the buffer alive; drop ours and let the map close when they go
        try:
            self._buf.release()
            self._mm.close()
        except (BufferError, ValueError):
            pass
        self._file.close()

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
