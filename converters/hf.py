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
from edgert.tokenizer import library_call, load_tokenizer_json

from . import dtypes
from .llama_tensor_names import name as reg
from .safetensors_reader import SafetensorsFile
from .source_checks import (HPARAM_LIMITS, bool_field, check_source_model, checked_hparams, dict_field,
                            float_field, int_field, list_field, show, str_field)
from .source_model import SourceModel, SourceTensor

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
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFormatError(f"{path}: cannot read JSON ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise ModelFormatError(f"{path}: must hold a JSON object, not {type(value).__name__}")
    return value


def _rope(where: Path, cfg: dict[str, Any]) -> tuple[tuple[str, Any], dict[str, Any] | None]:
    """((field, raw rope_theta), scaling dict or None), from the transformers 4 keys or the 5
    `rope_parameters`."""
    params = dict_field(where, "rope_parameters", cfg.get("rope_parameters") or {})
    theta = ("rope_theta", cfg["rope_theta"]) if "rope_theta" in cfg else \
        ("rope_parameters.rope_theta", params.get("rope_theta", 10000.0))
    kind = str_field(where, "rope_parameters.rope_type", params.get("rope_type"), default="default")
    scaling = cfg.get("rope_scaling") or (params if kind != "default" else None)
    if scaling is None:
        return theta, None
    scaling = dict_field(where, "rope_scaling", scaling)
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if str_field(where, "rope_scaling.rope_type", kind) == "default":
        return theta, None
    return theta, scaling


def llama3_rope_factors(scaling: dict[str, Any], theta: float, head_dim: int,
                        where: Any = "rope_scaling") -> np.ndarray:
    """Per-frequency divisors of Llama 3's rope scaling, as llama.cpp stores in rope_freqs.weight."""
    factor = float_field(where, "rope_scaling.factor", scaling.get("factor"), 0.0, 1e6, lo_open=True)
    low = float_field(where, "rope_scaling.low_freq_factor", scaling.get("low_freq_factor", 1.0), 0.0, 1e6,
                      lo_open=True)
    high = float_field(where, "rope_scaling.high_freq_factor", scaling.get("high_freq_factor", 4.0), low, 1e6,
                       lo_open=True)
    old_ctx = float_field(where, "rope_scaling.original_max_position_embeddings",
                          scaling.get("original_max_position_embeddings", 8192), 0.0, float(1 << 24), lo_open=True)
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
    """The id of a special token given as text (or {"content": text}), looked up in tokenizer.json's
    added tokens, then its vocabulary. Malformed entries are skipped: the tokenizers library has
    already accepted this tokenizer.json, and the id found is range-checked afterwards."""
    if isinstance(token, dict):
        token = token.get("content")
    if not isinstance(token, str):
        return None
    added = tok_json.get("added_tokens")
    for t in added if isinstance(added, list) else []:
        if isinstance(t, dict) and t.get("content") == token and isinstance(t.get("id"), int):
            return t["id"]
    model = tok_json.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    value = vocab.get(token) if isinstance(vocab, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id_list(where: Any, field: str, v: Any) -> list[int]:
    if v is None:
        return []
    return list_field(where, field, v if isinstance(v, list) else [v],
                      lambda f, x: int_field(where, f, x, 0, (1 << 31) - 1))


def _tokenizer(src: Path, cfg: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    tj_path = src / "tokenizer.json"
    if not tj_path.exists():
        raise ModelFormatError(f"{src}: no tokenizer.json; edgert needs the fast-tokenizer file "
                               "(save it with transformers' AutoTokenizer.save_pretrained)")
    try:
        text = tj_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"{tj_path}: not UTF-8 text ({e})") from None
    hf_tok = load_tokenizer_json(text, str(tj_path))
    tj = json.loads(text)  # valid: load_tokenizer_json parsed it
    tc_path, gen_path = src / "tokenizer_config.json", src / "generation_config.json"
    tcfg = _load_json(tc_path) if tc_path.exists() else {}
    gen = _load_json(gen_path) if gen_path.exists() else {}
    bos = _token_id(tj, tcfg.get("bos_token"))
    if bos is None:
        bos = cfg.get("bos_token_id", gen.get("bos_token_id"))
        bos = None if bos is None else int_field(src / "config.json", "bos_token_id", bos, 0, (1 << 31) - 1)
    eos = []
    for field, v in (("tokenizer_config.json eos_token", _token_id(tj, tcfg.get("eos_token"))),
                     ("config.json eos_token_id", cfg.get("eos_token_id")),
                     ("generation_config.json eos_token_id", gen.get("eos_token_id"))):
        eos += [i for i in _id_list(src, field, v) if i not in eos]
    probe = library_call(hf_tok.encode, "a", what=f"{tj_path}: tokenizing a probe", error=ModelFormatError).ids
    add_bos = bool_field(tc_path, "add_bos_token", tcfg.get("add_bos_token"),
                         default=bos is not None and probe[:1] == [bos])
    template = tcfg.get("chat_template")
    if template is None and (src / "chat_template.jinja").exists():
        try:
            template = (src / "chat_template.jinja").read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ModelFormatError(f"{src / 'chat_template.jinja'}: not UTF-8 text ({e})") from None
    if isinstance(template, list):  # named templates: keep the default one
        template = next((t.get("template") for t in template
                         if isinstance(t, dict) and t.get("name") == "default"), None)
    if template is not None:
        template = str_field(tc_path, "chat_template", template)
    pad = _token_id(tj, tcfg.get("pad_token"))
    if pad is None and cfg.get("pad_token_id") is not None:
        pad = int_field(src / "config.json", "pad_token_id", cfg["pad_token_id"], 0, (1 << 31) - 1)
    return ({"json": text, "bos_token_id": bos, "eos_token_ids": eos, "add_bos": add_bos,
             "pad_token_id": pad}, template)


def _shards(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.exists():
        weight_map = _load_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise ModelFormatError(f"{index}: weight_map must be an object of tensor name -> shard file name")
        files = sorted(set(weight_map.values()))
        for f in files:
            # a shard is a plain file name in this directory: never a path that leaves it
            if not f or f != Path(f).name or f in (".", ".."):
                raise ModelFormatError(f"{index}: shard {f!r} is not a file name in {src}")
            if not (src / f).is_file():
                raise ModelFormatError(f"{index}: shard {f!r} is missing from {src}")
        return [src / f for f in files]
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise ModelFormatError(f"{src}: no *.safetensors files (PyTorch .bin checkpoints are not read; "
                               "re-save with save_pretrained(safe_serialization=True))")
    return files


def read_hf(src: Path) -> tuple[SourceModel, list[Path]]:
    where = src / "config.json"
    cfg = _load_json(where)
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else cfg.get("model_type")
    if not (isinstance(arch, str) and arch in SUPPORTED_ARCHITECTURES):
        raise UnsupportedModelError(f"{src}: architecture {show(arch)} is not supported; "
                                    f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    act = cfg.get("hidden_act", "silu")
    if not (isinstance(act, str) and act in ("silu", "swish")):
        raise UnsupportedModelError(f"{src}: hidden_act {show(act)} is not supported (only silu)")
    if bool_field(where, "mlp_bias", cfg.get("mlp_bias"), default=False):
        raise UnsupportedModelError(f"{src}: mlp_bias is not supported")
    for key in ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers"):
        if key not in cfg:
            raise ModelFormatError(f"{where}: {key} is missing")
    hidden = int_field(where, "hidden_size", cfg["hidden_size"], *HPARAM_LIMITS["hidden_size"])
    heads = int_field(where, "num_attention_heads", cfg["num_attention_heads"], *HPARAM_LIMITS["num_heads"])
    head_dim = ("head_dim", cfg.get("head_dim")) if cfg.get("head_dim") else \
        ("hidden_size / num_attention_heads", hidden // heads)
    theta, scaling = _rope(where, cfg)
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "llama3":
            raise UnsupportedModelError(f"{src}: rope scaling type {show(kind)} is not supported (only llama3)")
    ctx = int_field(where, "max_position_embeddings", cfg.get("max_position_embeddings", 2048),
                    *HPARAM_LIMITS["context_length"])
    if arch == "Qwen2ForCausalLM" and bool_field(where, "use_sliding_window", cfg.get("use_sliding_window"),
                                                 default=False):
        raise UnsupportedModelError(f"{src}: Qwen2 sliding-window attention is not supported")
    if cfg.get("sliding_window"):
        # full attention equals sliding-window attention while the context fits in the window
        ctx = min(ctx, int_field(where, "sliding_window", cfg["sliding_window"], *HPARAM_LIMITS["context_length"]))

    shards = [SafetensorsFile(p) for p in _shards(src)]
    where_is: dict[str, SafetensorsFile] = {}
    for s in shards:
        for n in s.entries:
            if n in where_is:
                raise ModelFormatError(f"{src}: tensor {n} is in two shards ({where_is[n].path.name}, {s.path.name})")
            where_is[n] = s
    tie = bool_field(where, "tie_word_embeddings", cfg.get("tie_word_embeddings"), default=False) \
        or "lm_head.weight" not in where_is
    bias = "model.layers.0.self_attn.q_proj.bias" in where_is
    if arch == "Qwen2ForCausalLM" and not bias:
        raise ModelFormatError(f"{src}: Qwen2 checkpoint without q/k/v biases")
    if "model.embed_tokens.weight" not in where_is:
        raise ModelFormatError(f"{src}: no tensor model.embed_tokens.weight")
    embed_rows = where_is["model.embed_tokens.weight"].entries["model.embed_tokens.weight"].shape[0]

    hp = checked_hparams(where, {
        "vocab_size": ("vocab_size", cfg.get("vocab_size") or embed_rows), "hidden_size": ("hidden_size", hidden),
        "intermediate_size": ("intermediate_size", cfg["intermediate_size"]),
        "num_layers": ("num_hidden_layers", cfg["num_hidden_layers"]), "num_heads": ("num_attention_heads", heads),
        "num_kv_heads": ("num_key_value_heads", cfg.get("num_key_value_heads") or heads), "head_dim": head_dim,
        "rope_theta": theta, "rms_norm_eps": ("rms_norm_eps", cfg.get("rms_norm_eps", 1e-6)),
        "context_length": ("max_position_embeddings", ctx), "tie_embeddings": ("tie_word_embeddings", tie),
        "attention_bias": ("presence of q_proj.bias", bias),
    })

    tensors = []
    order = []
    for hf_name in where_is:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by the runtime from rope_theta
        if hf_name == "lm_head.weight" and tie:
            continue
        if hf_name in _GLOBAL:
            order.append((-1, hf_name, reg(_GLOBAL[hf_name])))
            continue
        parts = hf_name.split(".", 3)  # model, layers, N, suffix
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER \
                and parts[2].isdecimal() and len(parts[2]) <= 4 and int(parts[2]) < hp["num_layers"]:
            order.append((int(parts[2]), hf_name, reg(_LAYER[parts[3]], int(parts[2]))))
            continue
        raise UnsupportedModelError(f"{src}: unexpected tensor {show(hf_name)} for a {hp['num_layers']}-layer {arch}")
    order.sort(key=lambda x: (x[0], x[2]))
    for _, hf_name, name in order:
        s = where_is[hf_name]
        tensors.append(SourceTensor(name, s.entries[hf_name].shape, s.dtype_of(hf_name),
                                    (lambda s=s, n=hf_name: s.raw(n))))
    if scaling is not None:
        factors = llama3_rope_factors(scaling, hp["rope_theta"], hp["head_dim"], where)
        tensors.append(SourceTensor("rope_freqs.weight", factors.shape, dtypes.F32,
                                    lambda f=factors: f.view(np.uint8)))
    tok, template = _tokenizer(src, cfg)
    model = SourceModel("hf", src.name, hp, tok, template, tensors)
    check_source_model(src, model)
    return model, [p.path for p in shards]
