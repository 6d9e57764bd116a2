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
from .source_checks import HPARAM_LIMITS, check_source_model, checked_hparams, int_field, show, str_field
from .source_model import SourceModel, SourceTensor, permuted_loader

# GGUF tensor type -> edgert dtype; ids are shared, so this is the supported subset (edgert's own
# ids, 1000 and up, never appear in a GGUF).
_CARRIED = {t.id: t for t in dtypes.ALL if t.id < 1000}


def _hparams(g: GGUFFile, n_vocab: int, has_output: bool, has_bias: bool) -> dict[str, Any]:
    a = "llama"

    def field(key: str, default: Any = None, required: bool = False) -> tuple[str, Any]:
        v = g.get(f"{a}.{key}", default)
        if v is None and required:
            raise UnsupportedModelError(f"{g.path}: GGUF key {a}.{key} is missing")
        return f"{a}.{key}", v

    scaling = g.get(f"{a}.rope.scaling.type")
    if not (scaling is None or isinstance(scaling, str) and scaling == "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling type {show(scaling)} is not supported")
    hidden = field("embedding_length", required=True)
    heads = field("attention.head_count", required=True)
    head_dim = field("attention.key_length")
    if head_dim[1] is None:
        head_dim = field("rope.dimension_count")
    if head_dim[1] is None:  # implied by the others, once those are known to be sane
        h = int_field(g.path, hidden[0], hidden[1], *HPARAM_LIMITS["hidden_size"])
        n = int_field(g.path, heads[0], heads[1], *HPARAM_LIMITS["num_heads"])
        head_dim = (f"{hidden[0]} / {heads[0]}", h // n)
    return checked_hparams(g.path, {
        "vocab_size": ("rows of token_embd.weight", n_vocab),
        "hidden_size": hidden,
        "intermediate_size": field("feed_forward_length", required=True),
        "num_layers": field("block_count", required=True),
        "num_heads": heads,
        "num_kv_heads": field("attention.head_count_kv", heads[1]),
        "head_dim": head_dim,
        "rope_theta": field("rope.freq_base", 10000.0),
        "rms_norm_eps": field("attention.layer_norm_rms_epsilon", 1e-5),
        "context_length": field("context_length", required=True),
        "tie_embeddings": ("presence of output.weight", not has_output),
        "attention_bias": ("presence of blk.0.attn_q.bias", has_bias),
    })


def read_gguf(path: Path, g: GGUFFile) -> SourceModel:
    arch = g.get("general.architecture")
    if not (isinstance(arch, str) and arch == "llama"):
        raise UnsupportedModelError(f"{path}: GGUF architecture {show(arch)} is not supported (only 'llama')")
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
    name = str_field(path, "general.name", g.get("general.name"), default=None) or path.stem
    model = SourceModel("gguf", name, hp, tok, chat_template, tensors)
    check_source_model(path, model)
    return model
