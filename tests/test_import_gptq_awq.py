"""Import of GPTQ and AWQ checkpoints (Hugging Face layout) into edgert blocks without
re-quantizing: the converted file decodes to the values the checkpoint's own format definition
gives, and runs with the logits of transformers on those values.

No reference package writes a checkpoint here (autoawq 0.2.9 targets transformers < 5 and needs
its calibration download; gptqmodel builds CUDA-oriented extensions), so the checkpoints are
written by the packer below, from the formats' definitions (AutoGPTQ's pack(): codes along the
input dim, 8 per int32, v1 zeros stored minus one; AutoAWQ's WQLinear_GEMM.from_linear: codes
along the output dim in the order 0 2 4 6 1 3 5 7). It shares no code with the converter.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import save_file

from conftest import STORIES
from converters import convert
from converters.edgt_file import read_edgt
from edgert import LLM
from edgert.errors import UnsupportedModelError

transformers.logging.set_verbosity_error()
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def _pack_words(values: np.ndarray) -> np.ndarray:
    """values [..., 8] of 4-bit numbers -> int32 words, values[..., k] at bits 4k..4k+3."""
    out = np.zeros(values.shape[:-1], dtype=np.uint64)
    for k in range(8):
        out |= values[..., k].astype(np.uint64) << np.uint64(4 * k)
    return out.astype(np.uint32).view(np.int32)


def pack_gptq(q, z, s, v1=True):
    """q [out, in] codes, z [out, groups] zeros, s [out, groups] scales -> HF GPTQ tensors."""
    out_f, in_f = q.shape
    qweight = _pack_words(q.T.reshape(in_f // 8, 8, out_f).transpose(0, 2, 1))     # [in/8, out]
    zs = z.T - (1 if v1 else 0)                                                    # [groups, out]
    qzeros = _pack_words(zs.reshape(zs.shape[0], out_f // 8, 8))                  # [groups, out/8]
    return {"qweight": qweight, "qzeros": qzeros, "scales": s.T.astype(np.float16).copy()}


def pack_awq(q, z, s):
    out_f, in_f = q.shape
    qt = q.T.reshape(in_f, out_f // 8, 8)[..., AWQ_ORDER]      # nibble k <- output channel 8c + ORDER[k]
    zt = z.T.reshape(z.shape[1], out_f // 8, 8)[..., AWQ_ORDER]
    return {"qweight": _pack_words(qt), "qzeros": _pack_words(zt), "scales": s.T.astype(np.float16).copy()}


def _make_checkpoint(dest, method, group, *, sym=False, v1=True, zeros="random", seed=0, extra_cfg=None):
    """A tiny Llama (hidden 128, FFN 256) whose linears are random 4-bit codes; returns
    (dir, {hf weight name: dequantized float32 [out, in]} per the format definition)."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg)
    rng = np.random.default_rng(seed)
    tensors, dequant = {}, {}
    for name, p in model.state_dict().items():
        prefix = name[:-len(".weight")]
        if name.endswith(".weight") and prefix.endswith(LINEARS):
            out_f, in_f = p.shape
            g = in_f // group
            q = rng.integers(0, 16, (out_f, in_f), dtype=np.uint8)
            if sym:
                z = np.full((out_f, g), 8, np.uint8)
            elif zeros == "pow2":
                z = rng.choice([0, 1, 2, 4, 8], (out_f, g)).astype(np.uint8)
            else:
                z = rng.integers(1, 16, (out_f, g), dtype=np.uint8)
            s = (rng.uniform(0.002, 0.02, (out_f, g))).astype(np.float16).astype(np.float32)
            gi = np.arange(in_f) // group
            dequant[name] = (s[:, gi] * (q.astype(np.float32) - z[:, gi].astype(np.float32))).astype(np.float32)
            packed = pack_gptq(q, z, s, v1) if method == "gptq" else pack_awq(q, z, s)
            for k, v in packed.items():
                tensors[f"{prefix}.{k}"] = v
            if method == "gptq":
                tensors[f"{prefix}.g_idx"] = gi.astype(np.int32)
                tensors[f"{prefix}.bias"] = np.zeros(out_f, np.float16)  # as AutoGPTQ saves it
        else:
            tensors[name] = p.detach().numpy().astype(np.float32)
    save_file(tensors, str(dest / "model.safetensors"))
    qcfg = ({"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": False, "sym": sym,
             "checkpoint_format": "gptq" if v1 else "gptq_v2"} if method == "gptq" else
            {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True, "version": "gemm"})
    qcfg.update(extra_cfg or {})
    d = cfg.to_dict()
    d["architectures"] = ["LlamaForCausalLM"]
    d["quantization_config"] = qcfg
    (dest / "config.json").write_text(json.dumps(d))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(STORIES / "hf" / f, dest / f)
    # The float reference: the same model with the dequantized weights.
    with torch.no_grad():
        sd = model.state_dict()
        for name, w in dequant.items():
            sd[name].copy_(torch.from_numpy(w))
    return dest, dequant, model.eval()


def _edgt_name(hf_name: str) -> str:
    l = hf_name.split(".")[2]
    kind = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}[".".join(hf_name.split(".")[3:5])]
    return f"blk.{l}.{kind}.weight"


@pytest.mark.parametrize("method, group, sym, v1, zeros, want", [
    ("gptq", 32, True, True, "random", "q4_0"),
    ("gptq", 128, True, False, "random", "q4_0"),
    ("gptq", 64, False, True, "random", "q4_1"),
    ("gptq", 128, False, False, "pow2", "q4_1"),
    ("awq", 128, False, None, "random", "q4_1"),
    ("awq", 32, False, None, "pow2", "q4_1"),
])
def test_imported_values_equal_the_checkpoint_definition(tmp_path, method, group, sym, v1, zeros, want):
    src, dequant, ref = _make_checkpoint(tmp_path, method, group, sym=sym, v1=bool(v1), zeros=zeros)
    out = convert(src, tmp_path / "m.edgt", progress=False)
    f = read_edgt(out)
    worst = 0.0
    for hf_name, w in dequant.items():
        e = f.tensors[_edgt_name(hf_name)]
        assert e.dtype.name == want
        got = f.array(e.name)
        if want == "q4_0" or zeros == "pow2":
            assert np.array_equal(got, w), hf_name  # exact: d = scale, codes carried
        else:
            # q4_1's offset m = -scale*zero rounded to f16: at most half an f16 ulp of scale*zero.
            gi = np.arange(w.shape[1]) // group
            step = np.abs(w).max() / 15 + 1e-12
            err = np.abs(got - w)
            assert err.max() <= 2.0 ** -11 * 15 * step * 1.01, hf_name
            worst = max(worst, float(err.max()))
    ids = [1, 17, 300, 42, 9, 250, 77, 3]
    with torch.no_grad():
        want_logits = ref(torch.tensor([ids])).logits[0, -1].numpy()
    with LLM(out, n_ctx=32, n_threads=1, exact=True, kv_type="f32") as llm:
        got_logits = llm.logits(ids)
    assert float(np.abs(got_logits - want_logits).max() / want_logits.std()) < 0.02


def test_exact_import_writes_q8_0_where_q4_1_would_round(tmp_path):
    src, dequant, _ = _make_checkpoint(tmp_path, "awq", 64, zeros="random", seed=3)
    f = read_edgt(convert(src, tmp_path / "m.edgt", progress=False, exact_import=True))
    for hf_name, w in dequant.items():
        e = f.tensors[_edgt_name(hf_name)]
        assert e.dtype.name == "q8_0"
        assert np.array_equal(f.array(e.name), w), hf_name


@pytest.mark.parametrize("extra, match", [
    ({"bits": 3}, "4-bit"),
    ({"group_size": -1}, "group_size"),
    ({"checkpoint_format": "marlin"}, "checkpoint_format"),
])
def test_unsupported_gptq_variants_are_refused(tmp_path, extra, match):
    src, _, _ = _make_checkpoint(tmp_path, "gptq", 32, extra_cfg=extra)
    with pytest.raises(UnsupportedModelError, match=match):
        convert(src, tmp_path / "m.edgt", progress=False)
    assert not (tmp_path / "m.edgt").exists()


def test_act_order_g_idx_is_refused(tmp_path):
    from safetensors.numpy import load_file
    src, _, _ = _make_checkpoint(tmp_path, "gptq", 32)
    t = load_file(str(src / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.g_idx"
    t[name] = np.random.default_rng(0).permutation(t[name])
    save_file(t, str(src / "model.safetensors"))
    with pytest.raises(UnsupportedModelError, match="act-order"):
        convert(src, tmp_path / "m.edgt", progress=False)


def test_awq_gemv_is_refused(tmp_path):
    src, _, _ = _make_checkpoint(tmp_path, "awq", 32, extra_cfg={"version": "gemv"})
    with pytest.raises(UnsupportedModelError, match="gemm"):
        convert(src, tmp_path / "m.edgt", progress=False)
