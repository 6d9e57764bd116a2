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
from .source_model import SourceModel, SourceTensor, permuted_loader, row_slice_loader

# GGUF tensor type -> edgert dtype; ids are shared, so this is the supported subset.
_CARRIED = {t.id: t for t in (dtypes.F32, dtypes.F16, dtypes.BF16, dtypes.Q8_0, dtypes.Q4_0, dtypes.Q4_1)}

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


def _layer_types(g: GGUFFile, a: str, n_layers: int) -> list[str] | None:
    pattern = g.get(f"{a}.attention.sliding_window_pattern")
    if pattern is None:
        pattern = _GGUF_DEFAULTS.get(a, {}).get("swa_pattern", 0)
    if isinstance(pattern, (int, np.integer)):
        n = int(pattern)
        slides = [n == 0 or il % n < n - 1 for il in range(n_layers)]
    else:
        slides = [bool(x) for x in pattern]
        if len(slides) != n_layers:
            raise ModelFormatError(f"{g.path}: {a}.attention.sliding_window_pattern has {len(slides)} "
                                   f"entries for {n_layers} layers")
    if all(slides):
        return None  # every layer slides: no layer_types needed
    return ["sliding_attention" if s else "full_attention" for s in slides]


def _hparams(g: GGUFFile, a: str, n_vocab: int, has_output: bool, has_bias: bool) -> tuple[dict[str, Any], float | None]:
    """The hparams, and the linear RoPE scaling factor of full-attention layers (or None)."""
    def req(key: str) -> Any:
        v = g.get(f"{a}.{key}")
        if v is None:
            raise UnsupportedModelError(f"{g.path}: GGUF key {a}.{key} is missing")
        return v

    hidden = int(req("embedding_length"))
    heads = int(req("attention.head_count"))
    kv_heads = int(g.get(f"{a}.attention.head_count_kv", heads))
    head_dim = int(g.get(f"{a}.attention.key_length", g.get(f"{a}.rope.dimension_count", hidden // heads)))
    n_layers = int(req("block_count"))
    defaults = _GGUF_DEFAULTS.get(a, {})
    linear = None
    scaling = g.get(f"{a}.rope.scaling.type")
    if scaling == "linear":
        linear = float(req("rope.scaling.factor"))
    elif scaling not in (None, "none") and not (a == "phi3" and scaling in ("longrope", "su")):
        raise UnsupportedModelError(f"{g.path}: rope scaling type {scaling!r} is not supported")
    hp = {
        "vocab_size": n_vocab,
        "hidden_size": hidden,
        "intermediate_size": int(req("feed_forward_length")),
        "num_layers": n_layers,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "rope_theta": float(g.get(f"{a}.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(g.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
        "context_length": int(req("context_length")),
        "tie_embeddings": not has_output,
        "attention_bias": has_bias,
    }
    if "query_from_embd" in defaults:
        hp["query_pre_attn_scalar"] = float(hidden // heads if n_layers in defaults["query_from_embd"] else head_dim)
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if g.get(f"{a}.{key}"):
            hp[key] = float(g.get(f"{a}.{key}"))
    window = g.get(f"{a}.attention.sliding_window")
    if window:
        hp["sliding_window"] = int(window)
        types = _layer_types(g, a, n_layers)
        if types is not None:
            hp["layer_types"] = types
            local = g.get(f"{a}.rope.freq_base_swa", defaults.get("local_theta"))
            if local is not None:
                hp["rope_local_theta"] = float(local)
    if g.get(f"{a}.rope.scaling.original_context_length") is not None and "rope_factors_long.weight" in g.tensors:
        hp["rope_original_context_length"] = int(g.get(f"{a}.rope.scaling.original_context_length"))
        attn = float(g.get(f"{a}.rope.scaling.attn_factor", 1.0))
        if attn != 1.0:
            hp["rope_attn_factor"] = attn
    return hp, linear


def _known_names(n_layers: int) -> set[str]:
    out = set()
    for t in NAMES.values():
        out.update(t.format(i) for i in range(n_layers)) if t.per_layer else out.add(t.format())
    return out


def _check_architecture(path: Path, g: GGUFFile) -> str:
    arch = g.get("general.architecture")
    if arch in _REFUSED:
        raise UnsupportedModelError(f"{path}: GGUF architecture {arch!r} needs {_REFUSED[arch]}, which edgert does not run")
    if arch not in FAMILIES:
        raise UnsupportedModelError(f"{path}: GGUF architecture {arch!r} is not supported "
                                    f"(supported: {', '.join(FAMILIES)})")
    if int(g.get(f"{arch}.expert_count", 0) or 0) > 0:
        raise UnsupportedModelError(f"{path}: this {arch} GGUF has mixture-of-experts layers "
                                    f"({arch}.expert_count = {g.get(f'{arch}.expert_count')}), which edgert does not run")
    return arch


def read_gguf(path: Path, g: GGUFFile) -> SourceModel:
    arch = _check_architecture(path, g)
    for info in g.tensors.values():
        if info.ggml_type not in _CARRIED:
            raise UnsupportedModelError(
                f"{path}: tensor {info.name} has type {ggml_type_name(info.ggml_type)}; supported: "
                "F32, F16, BF16, Q8_0, Q4_0, Q4_1 (re-quantize the GGUF, or convert from the original checkpoint)")
    if "token_embd.weight" not in g.tensors:
        raise UnsupportedModelError(f"{path}: no token_embd.weight; is this a vocabulary-only GGUF?")
    n_layers = int(g.get(f"{arch}.block_count", 0))
    fused = {f"blk.{i}.{s}" for i in range(n_layers) for s in _FUSED} if arch == "phi3" else set()
    known = _known_names(n_layers) | fused
    unknown = sorted(set(g.tensors) - known)
    if unknown:
        raise UnsupportedModelError(f"{path}: tensors that edgert's {arch} does not have: {unknown[:5]}")
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
        suffix = info.name.split(".", 2)[-1]
        if arch == "phi3" and suffix in _FUSED and rows == sum(split_rows[suffix]):
            layer = int(info.name.split(".")[1])
            r0 = 0
            for rid, n in zip(_FUSED[suffix], split_rows[suffix]):
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
        f = np.full(hp["head_dim"] // 2, linear, dtype=np.float32)
        tensors.append(SourceTensor("rope_freqs.weight", f.shape, dtypes.F32, lambda f=f: f.view(np.uint8)))
    name = g.get("general.name") or path.stem
    return SourceModel("gguf", str(name), hp, tok, chat_template, tensors, arch)
