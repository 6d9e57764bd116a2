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
from edgert.tokenizer import library_call, load_tokenizer_json

from . import dtypes, quantize
from .families import FAMILIES
from .llama_tensor_names import name as reg
from .safetensors_reader import SafetensorsFile
from .source_checks import (HPARAM_LIMITS, bool_field, check_source_model, checked_hparams, dict_field,
                            float_field, int_field, list_field, show, str_field)
from .source_model import SourceModel, SourceTensor, generation_defaults, row_slice_loader

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


def _refuse_unsupported(src: Path, where: Path, cfg: dict[str, Any], cls: Any) -> str:
    """The families.def architecture of this checkpoint, or UnsupportedModelError naming what the
    runtime lacks."""
    if not isinstance(cls, str):
        raise UnsupportedModelError(f"{src}: architecture {show(cls)} is not supported; "
                                    f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    if cls in _REFUSED:
        raise UnsupportedModelError(f"{src}: {cls} needs {_REFUSED[cls]}, which edgert does not run")
    if cfg.get("vision_config") or cfg.get("audio_config"):
        raise UnsupportedModelError(f"{src}: {cls} has a vision or audio tower, which edgert does not run")
    for key in ("num_experts", "num_local_experts", "n_routed_experts"):
        if int_field(where, key, cfg.get(key), 0, 1 << 20, default=0) > 0:
            raise UnsupportedModelError(f"{src}: {cls} has mixture-of-experts layers, which edgert does not run")
    if cls not in HF_FAMILIES:
        raise UnsupportedModelError(f"{src}: architecture {show(cls)} is not supported; "
                                    f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return HF_FAMILIES[cls]


def _layer_types(where: Path, cfg: dict[str, Any], arch: str, n_layers: int) -> tuple[str, Any] | None:
    """(field, which layers slide in Hugging Face's layer_types names), or None when every layer
    does; checked by checked_hparams."""
    if cfg.get("layer_types") is not None:
        return "layer_types", cfg["layer_types"]
    if arch == "gemma2":
        return "Gemma 2's alternation", ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                         for i in range(n_layers)]
    if arch == "gemma3":
        pattern = int_field(where, "sliding_window_pattern", cfg.get("sliding_window_pattern"), 1, 1 << 10, default=6)
        return "sliding_window_pattern", ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                          for i in range(n_layers)]
    return None


def _family_hparams(src: Path, where: Path, cfg: dict[str, Any], arch: str, n_layers: int,
                    head_dim: int) -> dict[str, tuple[str, Any]]:
    """The optional hparams (docs/format.md) of this checkpoint as checked_hparams fields; absent
    keys mean Llama's."""
    hp: dict[str, tuple[str, Any]] = {}
    window = cfg.get("sliding_window")
    if arch in ("qwen2", "qwen3"):
        if bool_field(where, "use_sliding_window", cfg.get("use_sliding_window"), default=False):
            raise UnsupportedModelError(f"{src}: Qwen sliding-window attention (use_sliding_window) is not supported")
        window = None
    if window is not None and window is not False and window != 0:
        hp["sliding_window"] = ("sliding_window", window)
        types = _layer_types(where, cfg, arch, n_layers)
        if types is not None:
            hp["layer_types"] = types
    if arch in ("gemma2", "gemma3"):
        hp["query_pre_attn_scalar"] = ("query_pre_attn_scalar", cfg.get("query_pre_attn_scalar", head_dim))
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if cfg.get(key) is not None and cfg.get(key) != 0:
                hp[key] = (key, cfg[key])
    return hp


def _gemma3_rope(where: Path, cfg: dict[str, Any]) -> tuple[tuple[str, Any], dict[str, Any] | None, tuple[str, Any]]:
    """((field, global theta), global scaling or None, (field, local theta)) from the
    transformers 4 keys or the 5 per-layer-type `rope_parameters`."""
    params = dict_field(where, "rope_parameters", cfg.get("rope_parameters") or {})
    full = dict_field(where, "rope_parameters.full_attention", params.get("full_attention") or {})
    local = dict_field(where, "rope_parameters.sliding_attention", params.get("sliding_attention") or {})
    theta = ("rope_theta", cfg["rope_theta"]) if "rope_theta" in cfg else \
        ("rope_parameters.full_attention.rope_theta", full.get("rope_theta", 1_000_000.0))
    local_theta = ("rope_local_base_freq", cfg["rope_local_base_freq"]) if "rope_local_base_freq" in cfg else \
        ("rope_parameters.sliding_attention.rope_theta", local.get("rope_theta", 10_000.0))
    local_kind = str_field(where, "rope_parameters.sliding_attention.rope_type", local.get("rope_type"),
                           default="default")
    if local_kind != "default":
        raise UnsupportedModelError(f"{where}: Gemma 3 local rope type {show(local_kind)} is not supported")
    full_kind = str_field(where, "rope_parameters.full_attention.rope_type", full.get("rope_type"), default="default")
    scaling = cfg.get("rope_scaling") or (full if full_kind != "default" else None)
    if scaling is not None:
        scaling = dict_field(where, "rope_scaling", scaling)
        if str_field(where, "rope_scaling.rope_type", scaling.get("rope_type", scaling.get("type", "default"))) \
                == "default":
            scaling = None
    return theta, scaling, local_theta


_SCALINGS = ("llama3", "linear", "longrope", "su")


def _longrope_fields(where: Path, scaling: dict[str, Any], ctx: int, cfg: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """LongRoPE's hparams: the original context length (factors switch from short to long past
    it, as llama.cpp chooses) and the q/k scale after RoPE."""
    orig = scaling.get("original_max_position_embeddings") or cfg.get("original_max_position_embeddings") or ctx
    orig = int_field(where, "original_max_position_embeddings", orig, *HPARAM_LIMITS["context_length"])
    factor = float_field(where, "rope_scaling.factor", scaling.get("factor") or ctx / orig, 0.0, 1e6, lo_open=True)
    attn = scaling.get("attention_factor")
    if attn is None:
        attn = 1.0 if factor <= 1.0 or orig == 1 else math.sqrt(1 + math.log(factor) / math.log(orig))
    out = {"rope_original_context_length": ("original_max_position_embeddings", orig)}
    if attn != 1.0:
        out["rope_attn_factor"] = ("rope_scaling.attention_factor", attn)
    return out


def _rope_tensors(where: Path, scaling: dict[str, Any] | None, theta: float, head_dim: int) -> list[SourceTensor]:
    """RoPE scaling as factor tensors the runtime divides the frequencies by (llama.cpp's way):
    llama3 -> rope_freqs; linear -> rope_freqs of the factor (Gemma 3's global layers); longrope
    (Phi-3) -> rope_factors_short/long. `head_dim` is the rotated part of a head (rope_dim)."""
    def tensor(name: str, field: str, values: Any) -> SourceTensor:
        vals = list_field(where, field, values, lambda f, v: float_field(where, f, v, 0.0, 1e6, lo_open=True),
                          max_len=head_dim)
        if len(vals) != head_dim // 2:
            raise ModelFormatError(f"{where}: {field} needs {head_dim // 2} factors, got {len(vals)}")
        f = np.asarray(vals, dtype=np.float32)
        return SourceTensor(name, f.shape, dtypes.F32, lambda f=f: f.view(np.uint8))

    if scaling is None:
        return []
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        f = llama3_rope_factors(scaling, theta, head_dim, where)
        return [SourceTensor("rope_freqs.weight", f.shape, dtypes.F32, lambda f=f: f.view(np.uint8))]
    if kind == "linear":
        factor = float_field(where, "rope_scaling.factor", scaling.get("factor"), 0.0, 1e6, lo_open=True)
        return [tensor("rope_freqs.weight", "rope_scaling.factor", [factor] * (head_dim // 2))]
    return [tensor("rope_factors_short.weight", "rope_scaling.short_factor", scaling.get("short_factor")),
            tensor("rope_factors_long.weight", "rope_scaling.long_factor", scaling.get("long_factor"))]


def _plus_one_loader(load, dtype: dtypes.DType, shape: tuple[int, ...]):
    """A Gemma norm weight w as the 1 + w the runtime multiplies by (f32, as HF computes it)."""
    def run() -> np.ndarray:
        w = quantize.decode(np.asarray(load()), dtype, shape).astype(np.float32)
        return (np.float32(1.0) + w).astype(np.float32).view(np.uint8)
    return run


def read_hf(src: Path, exact_import: bool = False) -> tuple[SourceModel, list[Path]]:
    where = src / "config.json"
    cfg = _load_json(where)
    archs = cfg.get("architectures") or []
    cls = archs[0] if isinstance(archs, list) and archs else cfg.get("model_type")
    arch = _refuse_unsupported(src, where, cfg, cls)
    fam = FAMILIES[arch]
    act = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
    if not (isinstance(act, str) and act in _ACTIVATIONS[fam.ffn_activation]):
        raise UnsupportedModelError(f"{src}: hidden activation {show(act)} is not supported for {cls} "
                                    f"(expected {' or '.join(_ACTIVATIONS[fam.ffn_activation])})")
    if bool_field(where, "mlp_bias", cfg.get("mlp_bias"), default=False):
        raise UnsupportedModelError(f"{src}: mlp_bias is not supported")
    for key in ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers"):
        if key not in cfg:
            raise ModelFormatError(f"{where}: {key} is missing")
    hidden = int_field(where, "hidden_size", cfg["hidden_size"], *HPARAM_LIMITS["hidden_size"])
    heads = int_field(where, "num_attention_heads", cfg["num_attention_heads"], *HPARAM_LIMITS["num_heads"])
    n_layers = int_field(where, "num_hidden_layers", cfg["num_hidden_layers"], *HPARAM_LIMITS["num_layers"])
    head_dim = ("head_dim", cfg.get("head_dim")) if cfg.get("head_dim") else \
        ("hidden_size / num_attention_heads", hidden // heads)
    rope_params = dict_field(where, "rope_parameters", cfg.get("rope_parameters") or {})
    partial = cfg.get("partial_rotary_factor", rope_params.get("partial_rotary_factor"))
    partial = float_field(where, "partial_rotary_factor", partial, 0.0, 1.0, lo_open=True, default=1.0)
    if partial != 1.0 and arch != "phi3":  # transformers rotates a part of the head only for Phi-3
        raise UnsupportedModelError(f"{src}: partial rotary embeddings (partial_rotary_factor {partial}) "
                                    f"are not supported for {cls}")
    if arch == "gemma3":
        theta, scaling, local_theta = _gemma3_rope(where, cfg)
    else:
        (theta, scaling), local_theta = _rope(where, cfg), None
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if not (isinstance(kind, str) and kind in _SCALINGS):
            raise UnsupportedModelError(f"{src}: rope scaling type {show(kind)} is not supported "
                                        "(supported: llama3, linear, longrope)")
    ctx = int_field(where, "max_position_embeddings", cfg.get("max_position_embeddings", 2048),
                    *HPARAM_LIMITS["context_length"])
    head_dim_value = int_field(where, head_dim[0], head_dim[1], *HPARAM_LIMITS["head_dim"])
    family = _family_hparams(src, where, cfg, arch, n_layers, head_dim_value)
    if partial != 1.0:  # Phi-4-mini: transformers' int(head_dim * factor) leading dims of each head
        family["rope_dim"] = ("head_dim * partial_rotary_factor", int(head_dim_value * partial))
    if local_theta is not None and "layer_types" in family:
        family["rope_local_theta"] = local_theta
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) in ("longrope", "su"):
        family.update(_longrope_fields(where, scaling, ctx, cfg))

    shards = [SafetensorsFile(p) for p in _shards(src)]
    where_is: dict[str, Any] = {}
    for s in shards:
        for n in s.entries:
            if n in where_is:
                raise ModelFormatError(f"{src}: tensor {n} is in two shards ({where_is[n].path.name}, {s.path.name})")
            where_is[n] = s
    if cfg.get("quantization_config"):
        # GPTQ/AWQ: packed linears become block tensors under their float names (hf_quantized.py).
        from .hf_quantized import PackedLinears
        packed = PackedLinears(src, dict_field(where, "quantization_config", cfg["quantization_config"]), where_is,
                               exact=exact_import)
        where_is.update({n: packed for n in packed.entries})
    tie = bool_field(where, "tie_word_embeddings", cfg.get("tie_word_embeddings"), default=False) \
        or "lm_head.weight" not in where_is
    bias = "model.layers.0.self_attn.q_proj.bias" in where_is
    if arch == "qwen2" and not bias:
        raise ModelFormatError(f"{src}: Qwen2 checkpoint without q/k/v biases")
    if arch != "qwen2" and bias and cfg.get("attention_bias") is False:
        raise ModelFormatError(f"{src}: q/k/v biases in a checkpoint whose config says attention_bias false")
    if "model.embed_tokens.weight" not in where_is:
        raise ModelFormatError(f"{src}: no tensor model.embed_tokens.weight")
    embed_rows = where_is["model.embed_tokens.weight"].entries["model.embed_tokens.weight"].shape[0]

    hp = checked_hparams(where, {
        "vocab_size": ("vocab_size", cfg.get("vocab_size") or embed_rows), "hidden_size": ("hidden_size", hidden),
        "intermediate_size": ("intermediate_size", cfg["intermediate_size"]),
        "num_layers": ("num_hidden_layers", n_layers), "num_heads": ("num_attention_heads", heads),
        "num_kv_heads": ("num_key_value_heads", cfg.get("num_key_value_heads") or heads), "head_dim": head_dim,
        "rope_theta": theta, "rms_norm_eps": ("rms_norm_eps", cfg.get("rms_norm_eps", 1e-6)),
        "context_length": ("max_position_embeddings", ctx), "tie_embeddings": ("tie_word_embeddings", tie),
        "attention_bias": ("presence of q_proj.bias", bias), **family,
    })
    q_dim = hp["num_heads"] * hp["head_dim"]
    kv_dim = hp["num_kv_heads"] * hp["head_dim"]
    ffn = hp["intermediate_size"]
    fused_rows = {"self_attn.qkv_proj.weight": (q_dim, kv_dim, kv_dim), "mlp.gate_up_proj.weight": (ffn, ffn)}
    layer_names = _layer_names(arch)

    order = []  # (layer, registry name, hf name, row range of a fused tensor or None)
    for hf_name in where_is:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by the runtime from rope_theta
        if hf_name == "lm_head.weight" and tie:
            continue
        if hf_name in _GLOBAL:
            order.append((-1, reg(_GLOBAL[hf_name]), hf_name, None))
            continue
        parts = hf_name.split(".", 3)  # model, layers, N, suffix
        in_range = len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[2].isdecimal() \
            and len(parts[2]) <= 4 and int(parts[2]) < hp["num_layers"]
        if in_range and parts[3] in layer_names:
            order.append((int(parts[2]), reg(layer_names[parts[3]], int(parts[2])), hf_name, None))
            continue
        if in_range and arch == "phi3" and parts[3] in _FUSED:
            r0 = 0
            for rid, n in zip(_FUSED[parts[3]], fused_rows[parts[3]]):
                order.append((int(parts[2]), reg(rid, int(parts[2])), hf_name, (r0, r0 + n)))
                r0 += n
            continue
        raise UnsupportedModelError(f"{src}: unexpected tensor {show(hf_name)} for a {hp['num_layers']}-layer {cls}")
    order.sort(key=lambda x: (x[0], x[1]))
    tensors = []
    for _, name, hf_name, rows in order:
        s = where_is[hf_name]
        shape, dtype = s.entries[hf_name].shape, s.dtype_of(hf_name)
        load = (lambda s=s, n=hf_name: s.raw(n))
        if rows is not None:
            want = sum(fused_rows[hf_name.split(".", 3)[3]])
            if len(shape) != 2 or shape[0] != want:
                raise ModelFormatError(f"{src}: {hf_name} has shape {show(tuple(shape))}, expected {want} rows")
            load = row_slice_loader(load, shape[0], *rows)
            shape = (rows[1] - rows[0],) + tuple(shape[1:])
        if fam.hf_norm_plus_one and name.endswith("norm.weight"):
            load, dtype = _plus_one_loader(load, dtype, shape), dtypes.F32
        tensors.append(SourceTensor(name, shape, dtype, load))
    tensors += _rope_tensors(where, scaling, hp["rope_theta"], hp.get("rope_dim", hp["head_dim"]))
    tok, template = _tokenizer(src, cfg)
    gen = _load_json(src / "generation_config.json") if (src / "generation_config.json").exists() else {}
    model = SourceModel("hf", src.name, hp, tok, template, tensors, architecture=arch,
                        generation_config=generation_defaults(gen))
    check_source_model(src, model)
    return model, [p.path for p in shards]
