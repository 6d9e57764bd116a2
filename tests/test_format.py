"""The .edgt writer and reader against docs/format.md: layout bytes, round trip, and refusals."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from converters import quantize
from converters.dtypes import BF16, F16, F32, Q4_0, Q4_1, Q8_0
from converters.edgt_file import EdgtWriter, TensorSpec, read_edgt, write_edgt
from edgert.errors import ModelFormatError, ModelVersionError, UnsupportedModelError

META = {"format": "edgert", "format_version": 1, "architecture": "llama", "name": "t"}


def _sample(path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 64)).astype(np.float32)
    tensors = [
        ("a.f32", F32, rng.standard_normal(5).astype(np.float32)),
        ("b.f16", F16, rng.standard_normal((2, 3)).astype(np.float16)),
        ("c.bf16", BF16, quantize.encode(w, BF16), (3, 64)),
        ("d.q8_0", Q8_0, quantize.encode(w, Q8_0), (3, 64)),
        ("e.q4_0", Q4_0, quantize.encode(w, Q4_0), (3, 64)),
        ("f.q4_1", Q4_1, quantize.encode(w, Q4_1), (1, 3, 64)),
    ]
    write_edgt(path, META, tensors)
    return tensors, w


def test_layout_matches_spec(out_dir):
    p = out_dir / "m.edgt"
    tensors, _ = _sample(p)
    b = p.read_bytes()
    magic, version, meta_off, meta_size, tab_off, tab_size, data_off, data_size, count, crc = \
        struct.unpack_from("<4sIQQQQQQII", b, 0)
    assert (magic, version, meta_off, count) == (b"EDGT", 1, 64, len(tensors))
    assert json.loads(b[64:64 + meta_size].decode("utf-8")) == META
    assert tab_off == meta_off + meta_size
    assert data_off % 64 == 0 and data_off >= tab_off + tab_size
    assert b[tab_off + tab_size:data_off] == b"\0" * (data_off - tab_off - tab_size)
    assert data_off + data_size <= len(b)
    assert crc == zlib.crc32(b[:60] + b[64:64 + meta_size] + b[tab_off:tab_off + tab_size])
    # walk the table by hand, as the spec states it
    pos = tab_off
    for item in tensors:
        name, dtype = item[0], item[1]
        shape = tuple(item[3]) if len(item) > 3 else item[2].shape
        (n,) = struct.unpack_from("<H", b, pos)
        assert b[pos + 2:pos + 2 + n].decode() == name
        pos += 2 + n
        dt, nd = struct.unpack_from("<II", b, pos)
        pos += 8
        dims = struct.unpack_from(f"<{nd}Q", b, pos)
        pos += 8 * nd
        off, size, tcrc = struct.unpack_from("<QQI", b, pos)
        pos += 20
        assert (dt, dims) == (dtype.id, shape)
        assert off % 64 == 0 and size == dtype.nbytes(shape)
        payload = b[data_off + off:data_off + off + size]
        assert payload == np.ascontiguousarray(item[2]).tobytes()
        assert tcrc == zlib.crc32(payload)
    assert pos == tab_off + tab_size


def test_round_trip(out_dir):
    p = out_dir / "m.edgt"
    tensors, w = _sample(p)
    f = read_edgt(p)
    assert f.metadata == META
    assert list(f.tensors) == [t[0] for t in tensors]
    np.testing.assert_array_equal(f.array("a.f32"), tensors[0][2])
    np.testing.assert_array_equal(f.array("b.f16"), tensors[1][2].astype(np.float32))
    np.testing.assert_allclose(f.array("c.bf16"), w, rtol=2 ** -8)
    np.testing.assert_allclose(f.array("d.q8_0"), w, atol=np.abs(w).max() / 127)
    np.testing.assert_allclose(f.array("e.q4_0"), w, atol=np.abs(w).max() / 8 + 1e-6)
    assert f.array("f.q4_1").shape == (1, 3, 64)
    assert bytes(f.raw("d.q8_0")) == tensors[3][2].tobytes()


def test_writer_rejects_wrong_size_and_order(out_dir):
    specs = [TensorSpec("x", F32, (4,)), TensorSpec("y", F32, (2,))]
    with pytest.raises(ValueError, match="out of order"):
        with EdgtWriter(out_dir / "a.edgt", META, specs) as w:
            w.write("y", np.zeros(2, np.float32))
    assert not (out_dir / "a.edgt").exists()
    with pytest.raises(ValueError, match="bytes"):
        with EdgtWriter(out_dir / "b.edgt", META, specs) as w:
            w.write("x", np.zeros(3, np.float32))


def _patch(path, offset, fmt, value, fix_crc=True):
    b = bytearray(path.read_bytes())
    struct.pack_into(fmt, b, offset, value)
    if fix_crc:
        meta_size, tab_off, tab_size = struct.unpack_from("<Q", b, 16)[0], *struct.unpack_from("<QQ", b, 24)
        struct.pack_into("<I", b, 60, zlib.crc32(bytes(b[:60]) + bytes(b[64:64 + meta_size]) + bytes(b[tab_off:tab_off + tab_size])))
    path.write_bytes(bytes(b))


def test_refuses_newer_version(out_dir):
    p = out_dir / "m.edgt"
    _sample(p)
    _patch(p, 4, "<I", 2)
    with pytest.raises(ModelVersionError, match="newer"):
        read_edgt(p)


def test_refuses_unknown_dtype(out_dir):
    p = out_dir / "m.edgt"
    _sample(p)
    tab_off = struct.unpack_from("<Q", p.read_bytes(), 24)[0]
    _patch(p, tab_off + 2 + len("a.f32"), "<I", 77)
    with pytest.raises(UnsupportedModelError, match=r"a\.f32.*77"):
        read_edgt(p)


def test_refuses_bad_header_crc(out_dir):
    p = out_dir / "m.edgt"
    _sample(p)
    b = bytearray(p.read_bytes())
    b[70] ^= 0x01  # a byte of the metadata
    p.write_bytes(bytes(b))
    with pytest.raises(ModelFormatError, match="checksum"):
        read_edgt(p)


def test_refuses_bad_tensor_crc(out_dir):
    p = out_dir / "m.edgt"
    _sample(p)
    b = bytearray(p.read_bytes())
    b[-1] ^= 0x80  # last byte of the last tensor
    p.write_bytes(bytes(b))
    with pytest.raises(ModelFormatError, match="f.q4_1.*checksum"):
        read_edgt(p)
    read_edgt(p, verify_crc=False)  # structure is still valid


@pytest.mark.parametrize("keep", [0, 10, 63, 200, -1])
def test_refuses_truncation(out_dir, keep):
    p = out_dir / "m.edgt"
    _sample(p)
    b = p.read_bytes()
    p.write_bytes(b[:keep] if keep >= 0 else b[:-1])
    with pytest.raises(ModelFormatError):
        read_edgt(p)


def test_refuses_bad_magic_and_offsets(out_dir):
    p = out_dir / "m.edgt"
    _sample(p)
    good = p.read_bytes()
    p.write_bytes(b"GGUF" + good[4:])
    with pytest.raises(ModelFormatError, match="magic"):
        read_edgt(p)
    p.write_bytes(good)
    _patch(p, 48, "<Q", len(good))  # data_size past the end of the file
    with pytest.raises(ModelFormatError, match="truncated"):
        read_edgt(p)
