"""Hugging Face checkpoints of every family in families.def (Llama, Mistral, Qwen2/3, Gemma 2/3,
Phi-3) -> SourceModel.

Reads config.json, the safetensors shards (one tensor at a time through a memory map),
tokenizer.json, tokenizer_config.json and generation_config.json (chat template, BOS, and every
end-of-turn id). HF checkpoints already use the rotate_half RoPE order the format wants, so no
row permutation is needed here. What a family changes is declared once: its row in families.def
(read through families.py) and, here, how its config keys and tensor names map onto the format.
Checkpoints with parts the runtime lacks (mixture-of-experts layers, vision towers, partial
rotary) are refused by name.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError

from . import dtypes, quantize
from .families import FAMILIES
from .llama_tensor_names import name as reg
from .safetensors_reader import SafetensorsFile
from .source_model import SourceModel, SourceTensor, row_slice_loader

# Hugging Face class -> families.def architecture.
HF_FAMILIES = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "Phi3ForCausalLM": "phi3",
}
SUPPORTED_ARCHITECTURES = tuple(HF_FAMILIES)
# Classes people have that need parts the runtime lacks: refused with what is missing.
_REFUSED = {
    "MixtralForCausalLM": "mixture-of-experts layers", "Qwen2MoeForCausalLM": "mixture-of-experts layers",
    "Qwen3MoeForCausalLM": "mixture-of-experts layers", "PhimoeForCausalLM": "mixture-of-experts layers",
    "Gemma3ForConditionalGeneration": "a vision tower (convert a text-only Gemma3ForCausalLM checkpoint)",
    "Qwen2VLForConditionalGeneration": "a vision tower", "Qwen2_5_VLForConditionalGeneration": "a vision tower",
    "Phi3VForCausalLM": "a vision tower", "Phi4MMForCausalLM": "vision and audio towers",
    "MllamaForConditionalGeneration": "a vision tower", "Llama4ForConditionalGeneration": "mixture-of-experts layers and a vision tower",
}
# The GeGLU families' activation, and every name Hugging Face gives SiLU.
_ACTIVATIONS = {"SILU": ("silu", "swish"), "GELU_TANH": ("gelu_pytorch_tanh", "gelu_tanh")}

# HF per-layer suffix -> registry id
_LAYER = {
    "input_layernorm.weight": "ATTN_NORM",
    "self_attn.q_proj.weight": "ATTN_Q", "self_attn.k_proj.weight": "ATTN_K",
    "self_attn.v_proj.weight": "ATTN_V", "self_attn.o_proj.weight": "ATTN_OUTPUT",
    "self_attn.q_proj.bias": "ATTN_Q_BIAS", "self_attn.k_proj.bias": "ATTN_K_BIAS",
    "self_attn.v_proj.bias": "ATTN_V_BIAS",
    "post_attention_layernorm.weight": "FFN_NORM",
    "mlp.gate_proj.weight": "FFN_GATE", "mlp.up_proj.weight": "FFN_UP", "mlp.down_proj.weight": "FFN_DOWN",
}
_GLOBAL = {"model.embed_tokens.weight": "TOKEN_EMBD", "model.norm.weight": "OUTPUT_NORM", "lm_head.weight": "OUTPUT"}
# Families with qk_norm.
_QK_NORM = {"self_attn.q_norm.weight": "ATTN_Q_NORM", "self_attn.k_norm.weight": "ATTN_K_NORM"}
# Families with post_norms: Gemma names the pre-FFN norm pre_feedforward_layernorm and uses
# post_attention_layernorm for the attention output.
_POST_NORMS = {
    "post_attention_layernorm.weight": "ATTN_POST_NORM", "pre_feedforward_layernorm.weight": "FFN_NORM",
    "post_feedforward_layernorm.weight": "FFN_POST_NORM",
}
# Fused Phi-3 tensors: split by rows at convert time into the registry's separate ones.
_FUSED = {"self_attn.qkv_proj.weight": ("ATTN_Q", "ATTN_K", "ATTN_V"), "mlp.gate_up_proj.weight": ("FFN_GATE", "FFN_UP")}


def _layer_names(arch: str) -> dict[str, str]:
    fam = FAMILIES[arch]
    names = dict(_LAYER)
    if fam.qk_norm:
        names.update(_QK_NORM)
    if fam.post_norms:
        names.update(_POST_NORMS)
    return names


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read JSON ({e})") from None


def _rope(cfg: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, scaling dict or None), from the transformers 4 keys or the 5 `rope_parameters`."""
    params = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
    if scaling is not None and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return float(theta), scaling


def llama3_rope_factors(scaling: dict[str, Any], theta: float, head_dim: int) -> np.ndarray:
    """Per-frequency divisors of Llama 3's rope scaling, as llama.cpp stores in rope_freqs.weight."""
    factor = float(scaling["factor"])
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _token_id(tok_json: dict[str, Any], token: Any) -> int | None:
    if isinstance(token, dict):
        token = token.get("content")
    if token is None:
        return None
    for t in tok_json.get("added_tokens", []):
        if t["content"] == token:
            return int(t["id"])
    vocab = tok_json.get("model", {}).get("vocab")
    return int(vocab[token]) if isinstance(vocab, dict) and token in vocab else None


def _as_list(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, list) else [v])]


def _tokenizer(src: Path, cfg: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    tj_path = src / "tokenizer.json"
    if not tj_path.exists():
        raise ModelFormatError(f"{src}: no tokenizer.json; edgert needs the fast-tokenizer file "
                               "(save it with transformers' AutoTokenizer.save_pretrained)")
    text = tj_path.read_text(encoding="utf-8")
    tj = json.loads(text)
    tcfg = _load_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").exists() else {}
    gen = _load_json(src / "generation_config.json") if (src / "generation_config.json").exists() else {}
    bos = _token_id(tj, tcfg.get("bos_token"))
    if bos is None:
        bos = cfg.get("bos_token_id", gen.get("bos_token_id"))
    eos = []
    for v in (_token_id(tj, tcfg.get("eos_token")), cfg.get("eos_token_id"), gen.get("eos_token_id")):
        eos += [i for i in _as_list(v) if i not in eos]
    from tokenizers import Tokenizer
    probe = Tokenizer.from_str(text).encode("a").ids
    add_bos = bool(tcfg.get("add_bos_token", bos is not None and probe[:1] == [bos]))
    template = tcfg.get("chat_template")
    if template is None and (src / "chat_template.jinja").exists():
        template = (src / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: keep the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    pad = _token_id(tj, tcfg.get("pad_token"))
    if pad is None and cfg.get("pad_token_id") is not None:
        pad = int(cfg["pad_token_id"])
    return ({"json": text, "bos_token_id": None if bos is None else int(bos), "eos_token_ids": eos,
             "add_bos": add_bos, "pad_token_id": pad}, template)


def _shards(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(_load_json(index)["weight_map"].values()))
        return [src / f for f in files]
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise ModelFormatError(f"{src}: no *.safetensors files (PyTorch .bin checkpoints are not read; "
                               "re-save with save_pretrained(safe_serialization=True))")
    return files


def _refuse_unsupported(src: Path, cfg: dict[str, Any], cls: str | None) -> str:
    """The families.def architecture of this checkpoint, or UnsupportedModelError naming what the
    runtime lacks."""
    if cls in _REFUSED:
        raise UnsupportedModelError(f"{src}: {cls} needs {_REFUSED[cls]}, which edgert does not run")
    if cfg.get("vision_config") or cfg.get("audio_config"):
        raise UnsupportedModelError(f"{src}: {cls} has a vision or audio tower, which edgert does not run")
    if any(int(cfg.get(k) or 0) > 0 for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        raise UnsupportedModelError(f"{src}: {cls} has mixture-of-experts layers, which edgert does not run")
    if cls not in HF_FAMILIES:
        raise UnsupportedModelError(f"{src}: architecture {cls!r} is not supported; "
                                    f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return HF_FAMILIES[cls]


def _layer_types(cfg: dict[str, Any], arch: str, n_layers: int) -> list[str] | None:
    """Which layers slide (Hugging Face's layer_types names), or None when all or none do."""
    types = cfg.get("layer_types")
    if types is None and arch == "gemma2":
        types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n_layers)]
    if types is None and arch == "gemma3":
        pattern = int(cfg.get("sliding_window_pattern", 6))
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    if types is not None and (len(types) != n_layers or set(types) - {"sliding_attention", "full_attention"}):
        raise UnsupportedModelError(f"layer_types {types!r} is not a list of full/sliding attention layers")
    return list(types) if types is not None else None


def _family_hparams(src: Path, cfg: dict[str, Any], arch: str, n_layers: int, head_dim: int) -> dict[str, Any]:
    """The optional hparams (docs/format.md) of this checkpoint; absent keys mean Llama's."""
    hp: dict[str, Any] = {}
    window = cfg.get("sliding_window")
    if arch in ("qwen2", "qwen3"):
        if cfg.get("use_sliding_window"):
            raise UnsupportedModelError(f"{src}: Qwen sliding-window attention (use_sliding_window) is not supported")
        window = None
    if window:
        hp["sliding_window"] = int(window)
        types = _layer_types(cfg, arch, n_layers)
        if types is not None:
            hp["layer_types"] = types
    if arch in ("gemma2", "gemma3"):
        hp["query_pre_attn_scalar"] = float(cfg.get("query_pre_attn_scalar", head_dim))
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if cfg.get(key):
                hp[key] = float(cfg[key])
    return hp


def _gemma3_rope(cfg: dict[str, Any]) -> tuple[float, dict[str, Any] | None, float]:
    """(global theta, global scaling or None, local theta) from the transformers 4 keys or the 5
    per-layer-type `rope_parameters`."""
    params = cfg.get("rope_parameters") or {}
    full, local = params.get("full_attention") or {}, params.get("sliding_attention") or {}
    theta = float(cfg.get("rope_theta", full.get("rope_theta", 1_000_000.0)))
    local_theta = float(cfg.get("rope_local_base_freq", local.get("rope_theta", 10_000.0)))
    scaling = cfg.get("rope_scaling") or (full if full.get("rope_type", "default") != "default" else None)
    if local.get("rope_type", "default") != "default":
        raise UnsupportedModelError(f"Gemma 3 local rope type {local.get('rope_type')!r} is not supported")
    return theta, scaling, local_theta


def _rope_tensors(src: Path, scaling: dict[str, Any] | None, theta: float, head_dim: int, ctx: int,
                  cfg: dict[str, Any], hp: dict[str, Any]) -> list[SourceTensor]:
    """RoPE scaling as factor tensors the runtime divides the frequencies by (llama.cpp's way):
    llama3 -> rope_freqs; linear -> rope_freqs of the factor (Gemma 3's global layers); longrope
    (Phi-3) -> rope_factors_short/long plus rope_attn_factor and the original context length."""
    def tensor(name: str, values: Any) -> SourceTensor:
        f = np.asarray(values, dtype=np.float32)
        if f.shape != (head_dim // 2,):
            raise ModelFormatError(f"{src}: {name} needs {head_dim // 2} factors, got {f.shape}")
        return SourceTensor(name, f.shape, dtypes.F32, lambda f=f: f.view(np.uint8))

    if scaling is None:
        return []
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        return [tensor("rope_freqs.weight", llama3_rope_factors(scaling, theta, head_dim))]
    if kind == "linear":
        return [tensor("rope_freqs.weight", np.full(head_dim // 2, float(scaling["factor"])))]
    if kind in ("longrope", "su"):
        orig = int(scaling.get("original_max_position_embeddings") or cfg.get("original_max_position_embeddings") or ctx)
        factor = scaling.get("factor") or ctx / orig
        attn = scaling.get("attention_factor")
        if attn is None:
            attn = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        hp["rope_original_context_length"] = orig
        if float(attn) != 1.0:
            hp["rope_attn_factor"] = float(attn)
        return [tensor("rope_factors_short.weight", scaling["short_factor"]),
                tensor("rope_factors_long.weight", scaling["long_factor"])]
    raise UnsupportedModelError(f"{src}: rope scaling type {kind!r} is not supported "
                                "(supported: llama3, linear, longrope)")


def _plus_one_loader(load, dtype: dtypes.DType, shape: tuple[int, ...]):
    """A Gemma norm weight w as the 1 + w the runtime multiplies by (f32, as HF computes it)."""
    def run() -> np.ndarray:
        w = quantize.decode(np.asarray(load()), dtype, shape).astype(np.float32)
        return (np.float32(1.0) + w).astype(np.float32).view(np.uint8)
    return run


def read_hf(src: Path) -> tuple[SourceModel, list[Path]]:
    cfg = _load_json(src / "config.json")
    archs = cfg.get("architectures") or []
    cls = archs[0] if archs else cfg.get("model_type")
    arch = _refuse_unsupported(src, cfg, cls)
    fam = FAMILIES[arch]
    act = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
    if act not in _ACTIVATIONS[fam.ffn_activation]:
        raise UnsupportedModelError(f"{src}: hidden activation {act!r} is not supported for {cls} "
                                    f"(expected {' or '.join(_ACTIVATIONS[fam.ffn_activation])})")
    if cfg.get("mlp_bias"):
        raise UnsupportedModelError(f"{src}: mlp_bias is not supported")
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    rope_params = cfg.get("rope_parameters") or {}
    partial = cfg.get("partial_rotary_factor", rope_params.get("partial_rotary_factor", 1.0))
    if partial is not None and float(partial) != 1.0:
        raise UnsupportedModelError(f"{src}: partial rotary embeddings (partial_rotary_factor {partial}) "
                                    "are not supported")
    if arch == "gemma3":
        theta, scaling, local_theta = _gemma3_rope(cfg)
    else:
        (theta, scaling), local_theta = _rope(cfg), None
    ctx = int(cfg.get("max_position_embeddings", 2048))
    n_layers = int(cfg["num_hidden_layers"])
    family_hp = _family_hparams(src, cfg, arch, n_layers, head_dim)
    if local_theta is not None and "layer_types" in family_hp:
        family_hp["rope_local_theta"] = local_theta

    shards = [SafetensorsFile(p) for p in _shards(src)]
    where = {n: s for s in shards for n in s.entries}
    tie = bool(cfg.get("tie_word_embeddings", False)) or "lm_head.weight" not in where
    bias = "model.layers.0.self_attn.q_proj.bias" in where
    if arch == "qwen2" and not bias:
        raise ModelFormatError(f"{src}: Qwen2 checkpoint without q/k/v biases")
    if arch != "qwen2" and bias and cfg.get("attention_bias") is False:
        raise ModelFormatError(f"{src}: q/k/v biases in a checkpoint whose config says attention_bias false")
    q_dim = heads * head_dim
    kv_dim = int(cfg.get("num_key_value_heads") or heads) * head_dim
    ffn = int(cfg["intermediate_size"])
    fused_rows = {"self_attn.qkv_proj.weight": (q_dim, kv_dim, kv_dim), "mlp.gate_up_proj.weight": (ffn, ffn)}
    layer_names = _layer_names(arch)

    order = []  # (layer, registry name, hf name, row range of a fused tensor or None)
    for hf_name in where:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by the runtime from rope_theta
        if hf_name == "lm_head.weight" and tie:
            continue
        if hf_name in _GLOBAL:
            order.append((-1, reg(_GLOBAL[hf_name]), hf_name, None))
            continue
        parts = hf_name.split(".", 3)  # model, layers, N, suffix
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in layer_names:
            order.append((int(parts[2]), reg(layer_names[parts[3]], int(parts[2])), hf_name, None))
            continue
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and arch == "phi3" and parts[3] in _FUSED:
            r0 = 0
            for rid, n in zip(_FUSED[parts[3]], fused_rows[parts[3]]):
                order.append((int(parts[2]), reg(rid, int(parts[2])), hf_name, (r0, r0 + n)))
                r0 += n
            continue
        raise UnsupportedModelError(f"{src}: unexpected tensor {hf_name} for a {cls}")
    order.sort(key=lambda x: (x[0], x[1]))
    tensors = []
    for _, name, hf_name, rows in order:
        s = where[hf_name]
        shape, dtype = s.entries[hf_name].shape, s.dtype_of(hf_name)
        load = (lambda s=s, n=hf_name: s.raw(n))
        if rows is not None:
            if sum(fused_rows[hf_name.split(".", 3)[3]]) != shape[0]:
                raise ModelFormatError(f"{src}: {hf_name} has {shape[0]} rows, expected "
                                       f"{sum(fused_rows[hf_name.split('.', 3)[3]])}")
            load = row_slice_loader(load, shape[0], *rows)
            shape = (rows[1] - rows[0],) + tuple(shape[1:])
        if fam.hf_norm_plus_one and name.endswith("norm.weight"):
            load, dtype = _plus_one_loader(load, dtype, shape), dtypes.F32
        tensors.append(SourceTensor(name, shape, dtype, load))
    tensors += _rope_tensors(src, scaling, theta, head_dim, ctx, cfg, family_hp)
    vocab = int(cfg.get("vocab_size") or where["model.embed_tokens.weight"].entries["model.embed_tokens.weight"].shape[0])
    hp = {
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ffn,
        "num_layers": n_layers, "num_heads": heads,
        "num_kv_heads": int(cfg.get("num_key_value_heads") or heads), "head_dim": head_dim,
        "rope_theta": theta, "rms_norm_eps": float(cfg.get("rms_norm_eps", 1e-6)), "context_length": ctx,
        "tie_embeddings": tie, "attention_bias": bias, **family_hp,
    }
    tok, template = _tokenizer(src, cfg)
    return SourceModel("hf", src.name, hp, tok, template, tensors, arch), [p.path for p in shards]
