"""Hugging Face import: stories260K agrees with its llama2.c original, tiny random Llama/Mistral/
Qwen2 checkpoints in fp32/fp16/bf16 convert with the right metadata and tensors, and unsupported
inputs are refused by name."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import STORIES
from converters import convert
from converters.edgt_file import read_edgt
from converters.hf import llama3_rope_factors
from edgert.errors import ModelFormatError, UnsupportedModelError

HF_TO_EDGT = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
         "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
         "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_proj.bias": "attn_q.bias",
         "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
         "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
         "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}


def edgt_name(hf: str) -> str:
    if hf in HF_TO_EDGT:
        return HF_TO_EDGT[hf]
    _, _, n, suffix = hf.split(".", 3)
    return f"blk.{n}.{LAYER[suffix]}"


def test_stories_hf_equals_llama2c(tmp_path):
    a = read_edgt(convert(STORIES / "hf", tmp_path / "hf.edgt", progress=False))
    b = read_edgt(convert(STORIES / "stories260K.bin", tmp_path / "l2c.edgt", progress=False))
    assert a.metadata["hparams"] == b.metadata["hparams"]
    assert set(a.tensors) == set(b.tensors) and len(a.tensors) == 2 + 5 * 9
    for n in a.tensors:
        np.testing.assert_array_equal(a.array(n), b.array(n), err_msg=n)
    assert a.metadata["provenance"]["source_format"] == "hf"
    assert b.metadata["provenance"]["source_format"] == "llama2c"


@pytest.mark.parametrize("kind", ["llama_untied", "mistral", "qwen2"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_tiny_models(tiny_hf, tmp_path, kind, dtype):
    src = tiny_hf(kind, dtype)
    f = read_edgt(convert(src, tmp_path / "m.edgt", progress=False))
    hp = f.metadata["hparams"]
    cfg = json.loads((src / "config.json").read_text())
    assert hp["num_layers"] == 2 and hp["num_heads"] == 4 and hp["num_kv_heads"] == 2 and hp["head_dim"] == 16
    assert hp["tie_embeddings"] is False
    assert hp["attention_bias"] is (kind == "qwen2")
    assert hp["rope_theta"] == {"llama_untied": 50000.0, "mistral": 1e6, "qwen2": 1e6}[kind]
    assert hp["context_length"] == 256
    # Mistral's window is a sliding window of every layer (no layer_types: all of them slide)
    assert hp.get("sliding_window") == (128 if kind == "mistral" else None) and "layer_types" not in hp
    assert f.metadata["architecture"] == ("qwen2" if kind == "qwen2" else "llama")
    assert cfg["architectures"][0] in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
    sd = load_file(src / "model.safetensors")
    assert len(f.tensors) == len(sd)
    want_type = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[dtype]
    for hf_name, t in sd.items():
        name = edgt_name(hf_name)
        e = f.tensors[name]
        assert e.shape == tuple(t.shape)
        assert e.dtype.name == ("f32" if t.dim() == 1 else want_type), name
        np.testing.assert_array_equal(f.array(name), t.float().numpy(), err_msg=name)
    assert f.metadata["quantization"]["recipe"] == "keep"


def test_tied_model_has_no_output(tiny_hf, tmp_path):
    f = read_edgt(convert(tiny_hf("llama_tied"), tmp_path / "m.edgt", progress=False))
    assert f.metadata["hparams"]["tie_embeddings"] is True and "output.weight" not in f.tensors


@pytest.mark.parametrize("recipe,types", [("q4_0", {"f32": 11, "q4_0": 14, "q8_0": 2}),
                                          ("q4_1", {"f32": 11, "q4_1": 14, "q8_0": 2}),
                                          ("f16", {"f32": 11, "f16": 16}),
                                          ("bf16", {"f32": 11, "bf16": 16})])
def test_recipes_on_qwen2(tiny_hf, tmp_path, recipe, types):
    f = read_edgt(convert(tiny_hf("qwen2"), tmp_path / "m.edgt", quantize=recipe, progress=False))
    assert f.metadata["quantization"] == {"recipe": recipe, "tensor_types": types}
    assert f.tensors["blk.0.attn_q.bias"].dtype.name == "f32"
    out_type = "q8_0" if recipe.startswith("q4") else recipe
    assert f.tensors["output.weight"].dtype.name == out_type
    assert f.tensors["token_embd.weight"].dtype.name == out_type


def test_bf16_to_f32_is_exact(tiny_hf, tmp_path):
    src = tiny_hf("mistral", "bfloat16")
    f = read_edgt(convert(src, tmp_path / "m.edgt", quantize="f32", progress=False))
    t = load_file(src / "model.safetensors")["model.layers.1.mlp.down_proj.weight"]
    np.testing.assert_array_equal(f.array("blk.1.ffn_down.weight"), t.float().numpy())
    assert f.tensors["blk.1.ffn_down.weight"].dtype.name == "f32"


def _copy_with_config(tiny_hf, tmp_path, **changes):
    dst = tmp_path / "m"
    shutil.copytree(tiny_hf("llama_untied"), dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_llama3_rope_scaling(tiny_hf, tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    src = _copy_with_config(tiny_hf, tmp_path, rope_scaling=scaling, rope_parameters=None, rope_theta=500000.0)
    f = read_edgt(convert(src, tmp_path / "m.edgt", progress=False))
    got = f.array("rope_freqs.weight")
    assert got.shape == (8,) and f.tensors["rope_freqs.weight"].dtype.name == "f32"
    # transformers' own llama3 inverse frequencies = default ones / our factors
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=500000.0,
                      rope_scaling=dict(scaling, rope_theta=500000.0), max_position_embeddings=256)
    inv_scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    inv = 1.0 / 500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16)
    np.testing.assert_allclose((inv / torch.tensor(np.array(got))).numpy(), inv_scaled.numpy(), rtol=1e-5)
    np.testing.assert_allclose(llama3_rope_factors(scaling, 500000.0, 16), got)


def test_refuses_other_rope_scaling(tiny_hf, tmp_path):
    src = _copy_with_config(tiny_hf, tmp_path, rope_scaling={"rope_type": "yarn", "factor": 4.0}, rope_parameters=None)
    with pytest.raises(UnsupportedModelError, match="yarn"):
        convert(src, tmp_path / "m.edgt")


def test_refuses_other_architecture(tiny_hf, tmp_path):
    src = _copy_with_config(tiny_hf, tmp_path, architectures=["GPTNeoXForCausalLM"])
    with pytest.raises(UnsupportedModelError, match="GPTNeoXForCausalLM"):
        convert(src, tmp_path / "m.edgt")


def test_sharded_checkpoint(tiny_hf, tmp_path):
    from safetensors.torch import save_file
    src = tiny_hf("llama_untied")
    dst = tmp_path / "sharded"
    dst.mkdir()
    sd = load_file(src / "model.safetensors")
    names = sorted(sd)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for fname, keys in halves.items():
        save_file({k: sd[k] for k in keys}, dst / fname, metadata={"format": "pt"})
    (dst / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, ks in halves.items() for k in ks}}))
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, dst / f)
    a = read_edgt(convert(src, tmp_path / "a.edgt", progress=False))
    b = read_edgt(convert(dst, tmp_path / "b.edgt", progress=False))
    assert list(a.tensors) == list(b.tensors)
    for n in a.tensors:
        assert a.raw(n).tobytes() == b.raw(n).tobytes()


def test_dispatch_errors(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(ModelFormatError, match="unrecognised source"):
        convert(junk, tmp_path / "o.edgt")
    (tmp_path / "d").mkdir()
    with pytest.raises(ModelFormatError, match="config.json"):
        convert(tmp_path / "d", tmp_path / "o.edgt")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"nope" * 10)
    with pytest.raises(ModelFormatError, match="GGUF magic"):
        convert(fake, tmp_path / "o.edgt")


def test_missing_tokenizer_json(tiny_hf, tmp_path):
    src = _copy_with_config(tiny_hf, tmp_path)
    (src / "tokenizer.json").unlink()
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        convert(src, tmp_path / "o.edgt")
