"""Hugging Face Llama-family checkpoints (Llama, Mistral, Qwen2) -> SourceModel.

Reads config.json, the safetensors shards (one tensor at a time through a memory map),
tokenizer.json and tokenizer_config.json (chat template, BOS/EOS). HF checkpoints already use the
rotate_half RoPE order the format wants, so no row permutation is needed here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError

from . import dtypes
from .llama_tensor_names import name as reg
from .safetensors_reader import SafetensorsFile
from .source_model import SourceModel, SourceTensor, generation_defaults

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")

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


def read_hf(src: Path) -> tuple[SourceModel, list[Path]]:
    cfg = _load_json(src / "config.json")
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else cfg.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(f"{src}: architecture {arch!r} is not supported; "
                                    f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise UnsupportedModelError(f"{src}: hidden_act {act!r} is not supported (only silu)")
    if cfg.get("mlp_bias"):
        raise UnsupportedModelError(f"{src}: mlp_bias is not supported")
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    theta, scaling = _rope(cfg)
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "llama3":
            raise UnsupportedModelError(f"{src}: rope scaling type {kind!r} is not supported (only llama3)")
    ctx = int(cfg.get("max_position_embeddings", 2048))
    if arch == "Qwen2ForCausalLM" and cfg.get("use_sliding_window"):
        raise UnsupportedModelError(f"{src}: Qwen2 sliding-window attention is not supported")
    if cfg.get("sliding_window"):
        # full attention equals sliding-window attention while the context fits in the window
        ctx = min(ctx, int(cfg["sliding_window"]))

    shards = [SafetensorsFile(p) for p in _shards(src)]
    where = {n: s for s in shards for n in s.entries}
    tie = bool(cfg.get("tie_word_embeddings", False)) or "lm_head.weight" not in where
    bias = "model.layers.0.self_attn.q_proj.bias" in where
    if arch == "Qwen2ForCausalLM" and not bias:
        raise ModelFormatError(f"{src}: Qwen2 checkpoint without q/k/v biases")

    tensors = []
    order = []
    for hf_name in where:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by the runtime from rope_theta
        if hf_name == "lm_head.weight" and tie:
            continue
        if hf_name in _GLOBAL:
            order.append((-1, hf_name, reg(_GLOBAL[hf_name])))
            continue
        parts = hf_name.split(".", 3)  # model, layers, N, suffix
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER:
            order.append((int(parts[2]), hf_name, reg(_LAYER[parts[3]], int(parts[2]))))
            continue
        raise UnsupportedModelError(f"{src}: unexpected tensor {hf_name} for a {arch}")
    order.sort(key=lambda x: (x[0], x[2]))
    for _, hf_name, name in order:
        s = where[hf_name]
        tensors.append(SourceTensor(name, s.entries[hf_name].shape, s.dtype_of(hf_name),
                                    (lambda s=s, n=hf_name: s.raw(n))))
    if scaling is not None:
        factors = llama3_rope_factors(scaling, theta, head_dim)
        tensors.append(SourceTensor("rope_freqs.weight", factors.shape, dtypes.F32,
                                    lambda f=factors: f.view(np.uint8)))
    vocab = int(cfg.get("vocab_size") or where["model.embed_tokens.weight"].entries["model.embed_tokens.weight"].shape[0])
    hp = {
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": int(cfg["intermediate_size"]),
        "num_layers": int(cfg["num_hidden_layers"]), "num_heads": heads,
        "num_kv_heads": int(cfg.get("num_key_value_heads") or heads), "head_dim": head_dim,
        "rope_theta": theta, "rms_norm_eps": float(cfg.get("rms_norm_eps", 1e-6)), "context_length": ctx,
        "tie_embeddings": tie, "attention_bias": bias,
    }
    tok, template = _tokenizer(src, cfg)
    gen = _load_json(src / "generation_config.json") if (src / "generation_config.json").exists() else {}
    return (SourceModel("hf", src.name, hp, tok, template, tensors, generation_defaults(gen)),
            [p.path for p in shards])
