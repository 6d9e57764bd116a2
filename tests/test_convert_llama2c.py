"""llama2.c import: header variants, the tokenizer.bin -> tokenizer.json conversion, and refusals."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from tokenizers import Tokenizer

from conftest import DATA, STORIES
from converters import convert
from converters.edgt_file import read_edgt
from edgert.errors import ModelFormatError

V0_NAMES = ["token_embd", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
            "ffn_gate", "ffn_down", "ffn_up", "output_norm", "freq_real", "freq_imag"]


def _v0_sections(raw: bytes):
    dim, hidden, L, heads, kv_heads, vocab, seq = struct.unpack_from("<7i", raw, 0)
    kv = kv_heads * dim // heads
    sizes = [vocab * dim, L * dim, L * dim * dim, L * kv * dim, L * kv * dim, L * dim * dim, L * dim,
             L * hidden * dim, L * dim * hidden, L * hidden * dim, dim, seq * dim // heads // 2,
             seq * dim // heads // 2]
    out, pos = {}, 28
    for n, s in zip(V0_NAMES, sizes):
        out[n] = raw[pos:pos + 4 * s]
        pos += 4 * s
    return (dim, hidden, L, heads, kv_heads, vocab, seq), out


def test_v1_header_equals_v0(tmp_path):
    raw = (STORIES / "stories260K.bin").read_bytes()
    params, sec = _v0_sections(raw)
    head = struct.pack("<Ii7iB", 0x616B3432, 1, *params, 1)
    body = b"".join(sec[n] for n in ["attn_norm", "ffn_norm", "output_norm", "token_embd", "attn_q", "attn_k",
                                     "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"])
    v1 = tmp_path / "stories_v1.bin"
    v1.write_bytes(head + b"\0" * (256 - len(head)) + body)
    tok = STORIES / "tok512.bin"
    a = read_edgt(convert(STORIES / "stories260K.bin", tmp_path / "a.edgt", tokenizer=tok, progress=False))
    b = read_edgt(convert(v1, tmp_path / "b.edgt", tokenizer=tok, progress=False))
    assert list(a.tensors) == list(b.tensors)
    for n in a.tensors:
        assert a.raw(n).tobytes() == b.raw(n).tobytes(), n


def test_untied_classifier(tmp_path):
    raw = bytearray((STORIES / "stories260K.bin").read_bytes())
    struct.pack_into("<i", raw, 20, -512)  # negative vocab: a separate classifier follows
    cls = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)
    src = tmp_path / "untied.bin"
    src.write_bytes(bytes(raw) + cls.tobytes())
    f = read_edgt(convert(src, tmp_path / "u.edgt", tokenizer=STORIES / "tok512.bin", progress=False))
    assert f.metadata["hparams"]["tie_embeddings"] is False and f.metadata["hparams"]["vocab_size"] == 512
    np.testing.assert_array_equal(f.array("output.weight"), cls)


def test_tokenizer_matches_hf_stories(tmp_path):
    f = read_edgt(convert(STORIES / "stories260K.bin", tmp_path / "a.edgt", progress=False))
    ours = Tokenizer.from_str(f.metadata["tokenizer"]["json"])
    ref = Tokenizer.from_file(str(STORIES / "hf" / "tokenizer.json"))
    assert ours.get_vocab() == ref.get_vocab()
    text = (DATA / "text" / "tinystories-valid-sample.txt").read_text(encoding="utf-8")
    wiki = (DATA / "text" / "wikitext-2-raw-test.txt").read_text(encoding="utf-8")[:100_000]
    samples = [text, wiki, " leading space", "", "é€😀 bytes", "<s> literal", "a\n\nb  c"]
    for s in samples:
        assert ours.encode(s).ids == ref.encode(s).ids, s[:40]
        assert ours.decode(ours.encode(s).ids) == ref.decode(ref.encode(s).ids)
    assert f.metadata["tokenizer"]["bos_token_id"] == 1 and f.metadata["tokenizer"]["add_bos"] is True


def test_needs_tokenizer(tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes((STORIES / "stories260K.bin").read_bytes())
    with pytest.raises(ModelFormatError, match="tokenizer"):
        convert(src, tmp_path / "o.edgt")


def test_truncated_checkpoint(tmp_path):
    src = tmp_path / "cut.bin"
    src.write_bytes((STORIES / "stories260K.bin").read_bytes()[:5000])
    with pytest.raises(ModelFormatError, match="truncated"):
        convert(src, tmp_path / "o.edgt", tokenizer=STORIES / "tok512.bin")
