"""GGUF (v2/v3, architecture `llama`) -> SourceModel. Tensors are carried byte for byte; only the
Q/K rows are gathered back into Hugging Face RoPE order (llama.cpp's converter permuted them for
its interleaved RoPE)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgert.errors import UnsupportedModelError

from . import dtypes
from .gguf_reader import GGUFFile, ggml_type_name
from .gguf_tokenizer import tokenizer_metadata
from .llama_tensor_names import NAMES
from .source_model import SourceModel, SourceTensor, generation_defaults, permuted_loader

# GGUF tensor type -> edgert dtype; ids are shared, so this is the supported subset.
_CARRIED = {t.id: t for t in (dtypes.F32, dtypes.F16, dtypes.BF16, dtypes.Q8_0, dtypes.Q4_0, dtypes.Q4_1)}


def _hparams(g: GGUFFile, n_vocab: int, has_output: bool, has_bias: bool) -> dict[str, Any]:
    a = "llama"

    def req(key: str) -> Any:
        v = g.get(f"{a}.{key}")
        if v is None:
            raise UnsupportedModelError(f"{g.path}: GGUF key {a}.{key} is missing")
        return v

    hidden = int(req("embedding_length"))
    heads = int(req("attention.head_count"))
    kv_heads = int(g.get(f"{a}.attention.head_count_kv", heads))
    head_dim = int(g.get(f"{a}.attention.key_length", g.get(f"{a}.rope.dimension_count", hidden // heads)))
    scaling = g.get(f"{a}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling type {scaling!r} is not supported")
    return {
        "vocab_size": n_vocab,
        "hidden_size": hidden,
        "intermediate_size": int(req("feed_forward_length")),
        "num_layers": int(req("block_count")),
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "rope_theta": float(g.get(f"{a}.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(g.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
        "context_length": int(req("context_length")),
        "tie_embeddings": not has_output,
        "attention_bias": has_bias,
    }


def _known_names(n_layers: int) -> set[str]:
    out = set()
    for t in NAMES.values():
        out.update(t.format(i) for i in range(n_layers)) if t.per_layer else out.add(t.format())
    return out


def read_gguf(path: Path, g: GGUFFile) -> SourceModel:
    arch = g.get("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama')")
    for info in g.tensors.values():
        if info.ggml_type not in _CARRIED:
            raise UnsupportedModelError(
                f"{path}: tensor {info.name} has type {ggml_type_name(info.ggml_type)}; supported: "
                "F32, F16, BF16, Q8_0, Q4_0, Q4_1 (re-quantize the GGUF, or convert from the original checkpoint)")
    if "token_embd.weight" not in g.tensors:
        raise UnsupportedModelError(f"{path}: no token_embd.weight; is this a vocabulary-only GGUF?")
    n_layers = int(g.get("llama.block_count", 0))
    known = _known_names(n_layers)
    unknown = sorted(set(g.tensors) - known)
    if unknown:
        raise UnsupportedModelError(f"{path}: tensors not in the llama registry: {unknown[:5]}")
    n_vocab = g.tensors["token_embd.weight"].shape[0]
    hp = _hparams(g, n_vocab, "output.weight" in g.tensors, "blk.0.attn_q.bias" in g.tensors)
    tok = tokenizer_metadata(g)
    chat_template = tok.pop("chat_template")

    tensors = []
    for info in g.tensors.values():
        load = (lambda n=info.name: g.tensor_bytes(n))
        rows = info.shape[0]
        if info.name.endswith(("attn_q.weight", "attn_q.bias")):
            load = permuted_loader(load, rows, hp["num_heads"])
        elif info.name.endswith(("attn_k.weight", "attn_k.bias")):
            load = permuted_loader(load, rows, hp["num_kv_heads"])
        tensors.append(SourceTensor(info.name, info.shape, _CARRIED[info.ggml_type], load))
    name = g.get("general.name") or path.stem
    # llama.cpp's recommended-sampling keys (general.sampling.*), when the GGUF carries them.
    sampling = {"temperature": g.get("general.sampling.temp"), "top_k": g.get("general.sampling.top_k"),
                "top_p": g.get("general.sampling.top_p"), "min_p": g.get("general.sampling.min_p"),
                "repetition_penalty": g.get("general.sampling.penalty_repeat")}
    return SourceModel("gguf", str(name), hp, tok, chat_template, tensors,
                       generation_defaults({k: v for k, v in sampling.items() if v is not None}))
