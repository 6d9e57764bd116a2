"""Writer and reader of `.edgt` files (docs/format.md, version 1).

The writer computes the whole tensor table up front from names, dtypes and shapes, so tensors can
be streamed to disk one at a time; only the CRCs are patched in at the end. It writes to a hidden
temporary file beside the target and renames it into place only once it is complete, synced and
re-read by the reader below, so an error or Ctrl-C never leaves a partial file and never touches an
existing file of that name. The reader is a second,
independent implementation of the format that the C++ loader is tested against: it checks every
size, offset and checksum the spec names and raises the typed errors of `edgert.errors`.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgert.errors import ModelFormatError, ModelVersionError, UnsupportedModelError

from . import quantize
from .dtypes import BY_ID, DType

MAGIC = b"EDGT"
VERSION = 1
HEADER_SIZE = 64
ALIGN = 64
MAX_NAME_LEN = 1024
MAX_DIMS = 4
# magic, version, metadata_offset, metadata_size, table_offset, table_size, data_offset,
# data_size, tensor_count; the header CRC follows at byte 60.
_HEADER = struct.Struct("<4sIQQQQQQI")
assert _HEADER.size == 60


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as the writer will lay it out."""
    name: str
    dtype: DType
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TensorEntry:
    """One row of a file's tensor table. `offset` is relative to `data_offset`."""
    name: str
    dtype: DType
    shape: tuple[int, ...]
    offset: int
    size: int
    crc32: int


def _encode_entry(spec: TensorSpec, offset: int, size: int, crc: int) -> bytes:
    name = spec.name.encode("utf-8")
    return (struct.pack("<H", len(name)) + name + struct.pack("<II", spec.dtype.id, len(spec.shape))
            + struct.pack(f"<{len(spec.shape)}Q", *spec.shape) + struct.pack("<QQI", offset, size, crc))


class EdgtWriter:
    """Streams a `.edgt` file: tensors must be written in the order of `specs`.

        with EdgtWriter(path, metadata, specs) as w:
            for spec in specs:
                w.write(spec.name, raw_bytes)

    The file appears under `path` only when the block completes and the written file validates;
    if the block exits with an exception (KeyboardInterrupt included) the temporary file is removed
    and whatever `path` held before is left as it was. A symlink at `path` is followed: its
    target is replaced.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict[str, Any], specs: list[TensorSpec]):
        self.path = Path(path)
        self._specs = list(specs)
        names = [s.name for s in self._specs]
        if len(set(names)) != len(names):
            raise ValueError("tensor names must be unique")
        for s in self._specs:
            if not 1 <= len(s.name.encode("utf-8")) <= MAX_NAME_LEN:
                raise ValueError(f"tensor name length out of range: {s.name!r}")
            if not 1 <= len(s.shape) <= MAX_DIMS or any(int(d) < 1 for d in s.shape):
                raise ValueError(f"tensor {s.name}: bad shape {s.shape}")
        self._meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._sizes = [s.dtype.nbytes(s.shape) for s in self._specs]
        self._offsets = []
        off = 0
        for size in self._sizes:
            self._offsets.append(off)
            off = _align(off + size)
        # The data region ends at the end of the last tensor, not at its padding.
        self._data_size = (self._offsets[-1] + self._sizes[-1]) if self._specs else 0
        self._crcs = [0] * len(self._specs)
        self._table_size = len(self._table())
        self._table_offset = HEADER_SIZE + len(self._meta)
        self._data_offset = _align(self._table_offset + self._table_size)
        self._next = 0
        self._f: BinaryIO | None = None
        self._tmp: Path | None = None

    def _table(self) -> bytes:
        return b"".join(_encode_entry(s, o, n, c)
                        for s, o, n, c in zip(self._specs, self._offsets, self._sizes, self._crcs))

    def __enter__(self) -> "EdgtWriter":
        final = Path(os.path.realpath(self.path))
        if final.is_dir():
            raise IsADirectoryError(errno.EISDIR, "the output path is a directory", str(self.path))
        # O_EXCL: never write through a name someone else made; mode 0o666 lets the umask decide,
        # as open() would for the final name (mkstemp's 0600 would not).
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._tmp = tmp
        self._f = os.fdopen(fd, "wb")
        self._f.write(b"\0" * self._data_offset)  # header, metadata and table are written on close
        return self

    def write(self, name: str, data: bytes | np.ndarray) -> None:
        assert self._f is not None, "use EdgtWriter as a context manager"
        if self._next >= len(self._specs) or self._specs[self._next].name != name:
            expected = self._specs[self._next].name if self._next < len(self._specs) else None
            raise ValueError(f"tensor {name!r} written out of order; expected {expected!r}")
        buf = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8)) \
            if isinstance(data, np.ndarray) else memoryview(data)
        i = self._next
        if buf.nbytes != self._sizes[i]:
            raise ValueError(f"tensor {name}: got {buf.nbytes} bytes, its dtype and shape need {self._sizes[i]}")
        pos = self._data_offset + self._offsets[i]
        here = self._f.tell()
        if here < pos:
            self._f.write(b"\0" * (pos - here))
        self._f.write(buf)
        self._crcs[i] = zlib.crc32(buf)
        self._next += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._f is not None and self._tmp is not None
        tmp = self._tmp
        try:
            try:
                if exc_type is None:
                    if self._next != len(self._specs):
                        raise ValueError(f"only {self._next} of {len(self._specs)} tensors were written")
                    self._finish()
                    self._f.flush()
                    os.fsync(self._f.fileno())
            finally:
                self._f.close()
            if exc_type is None:
                # Read back through the reader (offsets, sizes, every CRC): a file that would not
                # load never replaces a good one.
                read_edgt(tmp, verify_crc=True)
                final = Path(os.path.realpath(self.path))
                os.replace(tmp, final)
                _fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if exc_type is not None:
            tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        f = self._f
        table = self._table()
        head = _HEADER.pack(MAGIC, VERSION, HEADER_SIZE, len(self._meta), self._table_offset,
                            len(table), self._data_offset, self._data_size, len(self._specs))
        crc = zlib.crc32(table, zlib.crc32(self._meta, zlib.crc32(head)))
        f.seek(0)
        f.write(head + struct.pack("<I", crc) + self._meta + table)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; some file systems refuse to open a directory, which is fine.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_edgt(path: str | os.PathLike, metadata: dict[str, Any],
               tensors: list[tuple[str, DType, np.ndarray]]) -> Path:
    """Convenience: write already-encoded tensors (name, dtype, array with the logical shape for
    f32/f16, or the raw uint8 bytes with `shape` given as a 4th element for block types)."""
    specs, payload = [], []
    for item in tensors:
        name, dtype, arr = item[0], item[1], item[2]
        shape = tuple(item[3]) if len(item) > 3 else tuple(arr.shape)
        specs.append(TensorSpec(name, dtype, shape))
        payload.append(arr)
    with EdgtWriter(path, metadata, specs) as w:
        for s, arr in zip(specs, payload):
            w.write(s.name, arr)
    return Path(path)


class EdgtFile:
    """A validated `.edgt` file, mapped read-only. Use `read_edgt`."""

    def __init__(self, path: Path, metadata: dict[str, Any], tensors: dict[str, TensorEntry],
                 data_offset: int, mm: np.memmap, header: dict[str, int]):
        self.path = path
        self.metadata = metadata
        self.tensors = tensors
        self.data_offset = data_offset
        self.header = header
        self._mm = mm

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view into the mapped file (no copy)."""
        e = self.tensors[name]
        start = self.data_offset + e.offset
        return self._mm[start:start + e.size]

    def array(self, name: str) -> np.ndarray:
        """The tensor as float32 of its logical shape (dequantized for block types)."""
        e = self.tensors[name]
        return quantize.decode(self.raw(name), e.dtype, e.shape)


def _fail(path: Path, what: str) -> ModelFormatError:
    return ModelFormatError(f"{path}: {what}; the file is not a valid .edgt file (re-convert it)")


def read_edgt(path: str | os.PathLike, *, verify_crc: bool = True) -> EdgtFile:
    """Open and validate a `.edgt` file. Raises ModelFormatError (corrupt or truncated),
    ModelVersionError (written by a newer format version) or UnsupportedModelError (unknown dtype)."""
    path = Path(path)
    file_size = path.stat().st_size
    if file_size < HEADER_SIZE:
        raise _fail(path, f"truncated: {file_size} bytes is shorter than the 64-byte header")
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
        (magic, version, meta_off, meta_size, tab_off, tab_size, data_off, data_size,
         count) = _HEADER.unpack_from(head)
        (header_crc,) = struct.unpack_from("<I", head, 60)
        if magic != MAGIC:
            raise _fail(path, f"bad magic {magic!r}, expected {MAGIC!r}")
        if version > VERSION:
            raise ModelVersionError(
                f"{path}: format version {version} is newer than this edgert reads ({VERSION}); upgrade edgert")
        if version < 1:
            raise _fail(path, f"bad format version {version}")
        if meta_off != HEADER_SIZE or tab_off != meta_off + meta_size:
            raise _fail(path, "metadata/table offsets are inconsistent")
        if tab_off + tab_size > file_size or data_off % ALIGN or data_off < tab_off + tab_size:
            raise _fail(path, "tensor table or data offset out of range")
        if data_off + data_size > file_size:
            raise _fail(path, f"truncated: data needs {data_off + data_size} bytes, file has {file_size}")
        meta_bytes = f.read(meta_size)
        table = f.read(tab_size)
    if zlib.crc32(table, zlib.crc32(meta_bytes, zlib.crc32(head[:60]))) != header_crc:
        raise _fail(path, "header checksum mismatch (header, metadata or tensor table is corrupt)")
    try:
        metadata = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"metadata is not valid UTF-8 JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise _fail(path, "metadata is not a JSON object")

    tensors = _parse_table(path, table, count, data_size)
    mm = np.memmap(path, dtype=np.uint8, mode="r") if file_size else np.zeros(0, np.uint8)
    ef = EdgtFile(path, metadata, tensors, data_off, mm,
                  dict(version=version, metadata_size=meta_size, tensor_table_offset=tab_off,
                       tensor_table_size=tab_size, data_offset=data_off, data_size=data_size,
                       tensor_count=count, header_crc32=header_crc))
    if verify_crc:
        for e in tensors.values():
            if zlib.crc32(ef.raw(e.name)) != e.crc32:
                raise _fail(path, f"tensor {e.name}: checksum mismatch (data is corrupt)")
    return ef


def _parse_table(path: Path, table: bytes, count: int, data_size: int) -> dict[str, TensorEntry]:
    tensors: dict[str, TensorEntry] = {}
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(table):
            raise _fail(path, "tensor table is truncated")
        out = struct.unpack_from(fmt, table, pos)
        pos += n
        return out

    spans = []
    for _ in range(count):
        (name_len,) = take("<H")
        if not 1 <= name_len <= MAX_NAME_LEN or pos + name_len > len(table):
            raise _fail(path, f"bad tensor name length {name_len}")
        try:
            name = table[pos:pos + name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(path, "tensor name is not UTF-8") from None
        pos += name_len
        dtype_id, n_dims = take("<II")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _fail(path, f"tensor {name}: n_dims {n_dims} outside 1..{MAX_DIMS}")
        shape = take(f"<{n_dims}Q")
        offset, size, crc = take("<QQI")
        if dtype_id not in BY_ID:
            raise UnsupportedModelError(f"{path}: tensor {name} has unknown dtype {dtype_id}; "
                                        "this edgert cannot run it")
        dtype = BY_ID[dtype_id]
        if any(d < 1 for d in shape):
            raise _fail(path, f"tensor {name}: dims must be >= 1, got {shape}")
        try:
            expected = dtype.nbytes(shape)
        except UnsupportedModelError:
            raise _fail(path, f"tensor {name}: last dim of {shape} is not a whole number of {dtype.name} blocks") from None
        if size != expected:
            raise _fail(path, f"tensor {name}: size {size} != {expected} implied by {dtype.name} {shape}")
        if offset % ALIGN or offset + size > data_size:
            raise _fail(path, f"tensor {name}: offset {offset} / size {size} outside the data region")
        if name in tensors:
            raise _fail(path, f"duplicate tensor name {name}")
        tensors[name] = TensorEntry(name, dtype, tuple(shape), offset, size, crc)
        spans.append((offset, offset + size, name))
    if pos != len(table):
        raise _fail(path, f"tensor table has {len(table) - pos} trailing bytes")
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise _fail(path, f"tensors {an} and {bn} overlap")
    return tensors
