"""GGUF (v2/v3) of every family in families.def -> SourceModel, following llama.cpp's conventions
for each `general.architecture`. Tensors are carried byte for byte; only the Q/K rows of `llama`
files are gathered back into Hugging Face RoPE order (llama.cpp's converter permuted them for its
interleaved RoPE; the other families use the rotate_half order already), and fused tensors
(Phi-3's attn_qkv, and its ffn_up that holds gate and up) are split by whole rows.

What llama.cpp knows about a family without writing it into the file (which layers slide, the
local RoPE base, the query scale) is in `_GGUF_DEFAULTS`, next to the code that reads it.
Architectures with parts the runtime lacks are refused naming what is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError

from . import dtypes
from .families import FAMILIES
from .gguf_reader import GGUFFile, ggml_type_name
from .gguf_tokenizer import tokenizer_metadata
from .llama_tensor_names import NAMES
from .source_checks import (HPARAM_LIMITS, bool_field, check_source_model, checked_hparams, float_field,
                            int_field, list_field, show, str_field)
from .source_model import SourceModel, SourceTensor, generation_defaults, permuted_loader, row_slice_loader

# GGUF tensor type -> edgert dtype; ids are shared, so this is the supported subset (edgert's own
# ids, 1000 and up, never appear in a GGUF).
_CARRIED = {t.id: t for t in dtypes.ALL if t.id < 1000}

# general.architecture values whose models need parts the runtime lacks.
_REFUSED = {
    "qwen2moe": "mixture-of-experts layers", "qwen3moe": "mixture-of-experts layers",
    "phimoe": "mixture-of-experts layers", "llama4": "mixture-of-experts layers",
    "deepseek2": "mixture-of-experts layers and multi-head latent attention",
    "gemma3n": "per-layer embeddings and AltUp blocks", "qwen2vl": "multimodal RoPE sections",
    "clip": "a vision tower (this is a multimodal projector file, not a language model)",
    "mllama": "a vision tower",
}


# What llama.cpp assumes per family instead of reading it from the file:
#   swa_pattern      layers that slide, as llama.cpp's set_swa_pattern(n): layer il slides when
#                    n == 0 or il % n < n - 1 (used when the file has a sliding window but no
#                    `attention.sliding_window_pattern`)
#   local_theta      RoPE base of sliding layers when the file has no `rope.freq_base_swa`
#   query_from_embd  block counts of the models whose query scale is (hidden/heads)^-1/2
#                    instead of head_dim^-1/2 (Gemma 2 27B, Gemma 3 27B)
_GGUF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": {"swa_pattern": 2, "query_from_embd": (46,)},
    "gemma3": {"swa_pattern": 6, "local_theta": 10000.0, "query_from_embd": (62,)},
    "phi3": {"swa_pattern": 0},  # Hugging Face slides every Phi-3 layer (llama.cpp disables it)
}

# GGUF names of fused tensors -> the registry ids they split into, in row order.
_FUSED = {"attn_qkv.weight": ("ATTN_Q", "ATTN_K", "ATTN_V"), "ffn_up.weight": ("FFN_GATE", "FFN_UP")}


def _layer_types(g: GGUFFile, a: str, n_layers: int) -> tuple[str, list[str]] | None:
    """(field, Hugging Face layer_types) of a file with a sliding window, or None when every
    layer slides; n_layers has been range-checked."""
    key = f"{a}.attention.sliding_window_pattern"
    pattern = g.get(key)
    if pattern is None:
        key, pattern = "llama.cpp's pattern for " + a, _GGUF_DEFAULTS.get(a, {}).get("swa_pattern", 0)
    if isinstance(pattern, (int, np.integer)) and not isinstance(pattern, (bool, np.bool_)):
        n = int_field(g.path, key, pattern, 0, 1 << 10)
        slides = [n == 0 or il % n < n - 1 for il in range(n_layers)]
    else:
        slides = list_field(g.path, key, pattern, lambda f, v: bool_field(g.path, f, v),
                            max_len=HPARAM_LIMITS["num_layers"][1])
        if len(slides) != n_layers:
            raise ModelFormatError(f"{g.path}: {key} has {len(slides)} entries for {n_layers} layers")
    if all(slides):
        return None  # every layer slides: no layer_types needed
    return key, ["sliding_attention" if s else "full_attention" for s in slides]


def _hparams(g: GGUFFile, a: str, n_vocab: int, has_output: bool, has_bias: bool) -> tuple[dict[str, Any], float | None]:
    """The checked hparams, and the linear RoPE scaling factor of full-attention layers (or None)."""
    def field(key: str, default: Any = None, required: bool = False) -> tuple[str, Any]:
        v = g.get(f"{a}.{key}", default)
        if v is None and required:
            raise UnsupportedModelError(f"{g.path}: GGUF key {a}.{key} is missing")
        return f"{a}.{key}", v

    defaults = _GGUF_DEFAULTS.get(a, {})
    linear = None
    scaling = g.get(f"{a}.rope.scaling.type")
    if scaling is not None and not isinstance(scaling, str):
        raise UnsupportedModelError(f"{g.path}: rope scaling type {show(scaling)} is not supported")
    if scaling == "linear":
        linear = field("rope.scaling.factor", required=True)
    elif scaling not in (None, "none") and not (a == "phi3" and scaling in ("longrope", "su")):
        raise UnsupportedModelError(f"{g.path}: rope scaling type {show(scaling)} is not supported")
    hidden = field("embedding_length", required=True)
    heads = field("attention.head_count", required=True)
    h = int_field(g.path, hidden[0], hidden[1], *HPARAM_LIMITS["hidden_size"])
    n = int_field(g.path, heads[0], heads[1], *HPARAM_LIMITS["num_heads"])
    # llama.cpp's rule: the head size is key_length, else hidden / heads; rope.dimension_count
    # is how many of its dims RoPE turns (n_rot), fewer than all for Phi-4-mini.
    head_dim = field("attention.key_length")
    if head_dim[1] is None:  # implied by the others, once those are known to be sane
        head_dim = (f"{hidden[0]} / {heads[0]}", h // n)
    rope_dim = field("rope.dimension_count")
    layers = field("block_count", required=True)
    n_layers = int_field(g.path, layers[0], layers[1], *HPARAM_LIMITS["num_layers"])
    fields = {
        "vocab_size": ("rows of token_embd.weight", n_vocab),
        "hidden_size": hidden,
        "intermediate_size": field("feed_forward_length", required=True),
        "num_layers": layers,
        "num_heads": heads,
        "num_kv_heads": field("attention.head_count_kv", heads[1]),
        "head_dim": head_dim,
        "rope_theta": field("rope.freq_base", 10000.0),
        "rms_norm_eps": field("attention.layer_norm_rms_epsilon", 1e-5),
        "context_length": field("context_length", required=True),
        "tie_embeddings": ("presence of output.weight", not has_output),
        "attention_bias": ("presence of blk.0.attn_q.bias", has_bias),
    }
    if rope_dim[1] is not None and rope_dim[1] != head_dim[1]:
        if a != "phi3":  # llama.cpp's other families here rotate whole heads
            raise UnsupportedModelError(f"{g.path}: {rope_dim[0]} = {show(rope_dim[1])} differs from the head size "
                                        f"{show(head_dim[1])}: partial rotary embeddings are supported for phi3 only")
        fields["rope_dim"] = rope_dim
    if "query_from_embd" in defaults:
        hd = int_field(g.path, head_dim[0], head_dim[1], *HPARAM_LIMITS["head_dim"])
        fields["query_pre_attn_scalar"] = (f"llama.cpp's query scale of {a}",
                                           h // n if n_layers in defaults["query_from_embd"] else hd)
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        cap = field(key)
        if cap[1] is not None and cap[1] != 0:
            fields[key] = cap
    window = field("attention.sliding_window")
    if window[1] is not None and window[1] != 0:
        fields["sliding_window"] = window
        types = _layer_types(g, a, n_layers)
        if types is not None:
            fields["layer_types"] = types
            local = field("rope.freq_base_swa", defaults.get("local_theta"))
            if local[1] is not None:
                fields["rope_local_theta"] = local
    if g.get(f"{a}.rope.scaling.original_context_length") is not None and "rope_factors_long.weight" in g.tensors:
        fields["rope_original_context_length"] = field("rope.scaling.original_context_length")
        attn = field("rope.scaling.attn_factor")
        if attn[1] is not None and attn[1] != 1.0:
            fields["rope_attn_factor"] = attn
    hp = checked_hparams(g.path, fields)
    if linear is not None:
        linear = float_field(g.path, linear[0], linear[1], 0.0, 1e6, lo_open=True)
    return hp, linear


def _check_architecture(path: Path, g: GGUFFile) -> str:
    arch = g.get("general.architecture")
    if not isinstance(arch, str):
        raise UnsupportedModelError(f"{path}: GGUF architecture {show(arch)} is not supported "
                                    f"(supported: {', '.join(FAMILIES)})")
    if arch in _REFUSED:
        raise UnsupportedModelError(f"{path}: GGUF architecture {arch!r} needs {_REFUSED[arch]}, which edgert does not run")
    if arch not in FAMILIES:
        raise UnsupportedModelError(f"{path}: GGUF architecture {show(arch)} is not supported "
                                    f"(supported: {', '.join(FAMILIES)})")
    experts = g.get(f"{arch}.expert_count")
    if int_field(path, f"{arch}.expert_count", experts, 0, 1 << 20, default=0) > 0:
        raise UnsupportedModelError(f"{path}: this {arch} GGUF has mixture-of-experts layers "
                                    f"({arch}.expert_count = {experts}), which edgert does not run")
    return arch


def read_gguf(path: Path, g: GGUFFile) -> SourceModel:
    arch = _check_architecture(path, g)
    for info in g.tensors.values():
        if info.ggml_type not in _CARRIED:
            raise UnsupportedModelError(
                f"{path}: tensor {info.name} has type {ggml_type_name(info.ggml_type)}; supported: "
                f"{', '.join(sorted(t.name.upper() for t in _CARRIED.values()))} "
                "(re-quantize the GGUF, or convert from the original checkpoint)")
    if "token_embd.weight" not in g.tensors:
        raise UnsupportedModelError(f"{path}: no token_embd.weight; is this a vocabulary-only GGUF?")
    # Every count is checked before anything is sized or looped over from it.
    n_vocab = g.tensors["token_embd.weight"].shape[0]
    hp, linear = _hparams(g, arch, n_vocab, "output.weight" in g.tensors, "blk.0.attn_q.bias" in g.tensors)
    tok = tokenizer_metadata(g)
    chat_template = tok.pop("chat_template")

    q_dim, kv_dim = hp["num_heads"] * hp["head_dim"], hp["num_kv_heads"] * hp["head_dim"]
    ffn = hp["intermediate_size"]
    split_rows = {"attn_qkv.weight": (q_dim, kv_dim, kv_dim), "ffn_up.weight": (ffn, ffn)}
    tensors = []
    for info in g.tensors.values():
        load = (lambda n=info.name: g.tensor_bytes(n))
        rows = info.shape[0]
        dtype = _CARRIED[info.ggml_type]
        parts = info.name.split(".", 2)
        if arch == "phi3" and len(parts) == 3 and parts[0] == "blk" and parts[1].isdecimal() \
                and int(parts[1]) < hp["num_layers"] and parts[2] in _FUSED and len(info.shape) == 2 \
                and rows == sum(split_rows[parts[2]]):
            layer = int(parts[1])
            r0 = 0
            for rid, n in zip(_FUSED[parts[2]], split_rows[parts[2]]):
                tensors.append(SourceTensor(NAMES[rid].format(layer), (n,) + tuple(info.shape[1:]), dtype,
                                            row_slice_loader(load, rows, r0, r0 + n)))
                r0 += n
            continue
        if arch == "llama" and info.name.endswith(("attn_q.weight", "attn_q.bias")):
            load = permuted_loader(load, rows, hp["num_heads"])
        elif arch == "llama" and info.name.endswith(("attn_k.weight", "attn_k.bias")):
            load = permuted_loader(load, rows, hp["num_kv_heads"])
        tensors.append(SourceTensor(info.name, info.shape, dtype, load))
    if linear is not None:
        if "rope_freqs.weight" in g.tensors:
            raise UnsupportedModelError(f"{path}: both rope_freqs.weight and linear rope scaling")
        f = np.full(hp.get("rope_dim", hp["head_dim"]) // 2, linear, dtype=np.float32)
        tensors.append(SourceTensor("rope_freqs.weight", f.shape, dtypes.F32, lambda f=f: f.view(np.uint8)))
    name = str_field(path, "general.name", g.get("general.name"), default=None) or path.stem
    # llama.cpp's recommended-sampling keys (general.sampling.*), when the GGUF carries them.
    sampling = {"temperature": g.get("general.sampling.temp"), "top_k": g.get("general.sampling.top_k"),
                "top_p": g.get("general.sampling.top_p"), "min_p": g.get("general.sampling.min_p"),
                "repetition_penalty": g.get("general.sampling.penalty_repeat")}
    model = SourceModel("gguf", name, hp, tok, chat_template, tensors, architecture=arch,
                        generation_config=generation_defaults({k: v for k, v in sampling.items() if v is not None}))
    check_source_model(path, model)
    return model
