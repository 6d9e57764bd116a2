"""llama2.c checkpoints (legacy v0 header of 7 int32, or the v1 "ak42" 256-byte header) and
tokenizer.bin files -> SourceModel.

llama2.c trains with interleaved RoPE, so Q/K rows are gathered into Hugging Face order as for
GGUF. Its tokenizer.bin is a SentencePiece BPE vocabulary with scores in which "▁" was written as
" " and BOS/EOS as "\\n<s>\\n" / "\\n</s>\\n"; undoing that gives the Llama 2 vocabulary back.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from edgert.errors import ModelFormatError

from . import dtypes, tokenizer_json
from .llama_tensor_names import name as reg
from .source_checks import check_source_model, checked_hparams
from .source_model import SourceModel, SourceTensor, permuted_loader

V1_MAGIC = 0x616B3432  # "ak42"
V1_HEADER_BYTES = 256
_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def read_header(path: Path) -> tuple[dict[str, int], bool, int, int]:
    """(config, shared_classifier, version, weights offset). Raises ModelFormatError if the bytes
    do not look like a llama2.c checkpoint."""
    with open(path, "rb") as f:
        head = f.read(V1_HEADER_BYTES)
    if len(head) < 28:
        raise ModelFormatError(f"{path}: too short to be a llama2.c checkpoint")
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == V1_MAGIC:
        if len(head) < V1_HEADER_BYTES:
            raise ModelFormatError(f"{path}: truncated llama2.c v1 header")
        (version,) = struct.unpack_from("<i", head, 4)
        if version != 1:
            raise ModelFormatError(f"{path}: llama2.c checkpoint version {version} is not supported (only 0 and 1)")
        cfg = dict(zip(_FIELDS, struct.unpack_from("<7i", head, 8)))
        shared = bool(head[36])
        version, offset = 1, V1_HEADER_BYTES
    else:
        cfg = dict(zip(_FIELDS, struct.unpack_from("<7i", head, 0)))
        shared = cfg["vocab_size"] > 0
        cfg["vocab_size"] = abs(cfg["vocab_size"])
        version, offset = 0, 28
    c = cfg
    plausible = (0 < c["dim"] <= 1 << 16 and 0 < c["hidden_dim"] <= 1 << 18 and 0 < c["n_layers"] <= 1024
                 and 0 < c["n_heads"] <= c["dim"] and 0 < c["n_kv_heads"] <= c["n_heads"]
                 and c["n_heads"] % c["n_kv_heads"] == 0 and c["dim"] % c["n_heads"] == 0
                 and 0 < c["vocab_size"] <= 1 << 22 and 0 < c["seq_len"] <= 1 << 22)
    if not plausible:
        raise ModelFormatError(f"{path}: not a llama2.c checkpoint (implausible header {cfg})")
    return cfg, shared, version, offset


def looks_like_llama2c(path: Path) -> bool:
    try:
        read_header(path)
        return True
    except (ModelFormatError, OSError, struct.error):
        return False


def _layout(c: dict[str, int], shared: bool, version: int) -> list[tuple[str, tuple[int, ...]]]:
    """(registry name, shape) in file order, the legacy freq_cis tables named '' (skipped)."""
    d, h, L, V = c["dim"], c["hidden_dim"], c["n_layers"], c["vocab_size"]
    kv = c["n_kv_heads"] * (d // c["n_heads"])
    per = lambda key, shape: [(reg(key, i), shape) for i in range(L)]
    mats = (per("ATTN_Q", (d, d)) + per("ATTN_K", (kv, d)) + per("ATTN_V", (kv, d))
            + per("ATTN_OUTPUT", (d, d)))
    ffn = per("FFN_GATE", (h, d)) + per("FFN_DOWN", (d, h)) + per("FFN_UP", (h, d))
    if version == 0:
        head_half = d // c["n_heads"] // 2
        out = ([(reg("TOKEN_EMBD"), (V, d))] + per("ATTN_NORM", (d,)) + mats + per("FFN_NORM", (d,)) + ffn
               + [(reg("OUTPUT_NORM"), (d,)), ("", (c["seq_len"], head_half)), ("", (c["seq_len"], head_half))])
    else:
        out = (per("ATTN_NORM", (d,)) + per("FFN_NORM", (d,)) + [(reg("OUTPUT_NORM"), (d,)), (reg("TOKEN_EMBD"), (V, d))]
               + mats + ffn)
    if not shared:
        out.append((reg("OUTPUT"), (V, d)))
    return out


def read_tokenizer_bin(path: Path, vocab_size: int) -> tuple[list[str], list[float]]:
    data = Path(path).read_bytes()
    pos = 4
    tokens, scores = [], []
    try:
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", data, pos)
            pos += 8
            if n < 0 or pos + n > len(data):
                raise ModelFormatError(f"{path}: token length {n} runs past the end of the file")
            piece = data[pos:pos + n].decode("utf-8")
            pos += n
            if not math.isfinite(score):
                raise ModelFormatError(f"{path}: token {len(tokens)} has score {score}; scores must be finite")
            tokens.append(piece)
            scores.append(score)
    except (struct.error, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: not a llama2.c tokenizer for a {vocab_size}-token model ({e})") from None
    # llama2.c's export wrote BOS/EOS as "\n<s>\n"/"\n</s>\n" and "▁" as " "
    tokens = [t.strip("\n") if t in ("\n<s>\n", "\n</s>\n") else t.replace(" ", "▁") for t in tokens]
    return tokens, scores


def read_llama2c(path: Path, tokenizer: Path) -> SourceModel:
    cfg, shared, version, offset = read_header(path)
    if cfg["vocab_size"] < 3:
        raise ModelFormatError(f"{path}: vocab_size = {cfg['vocab_size']}; a llama2.c vocabulary holds at "
                               "least <unk>, <s> and </s>")
    hp = checked_hparams(path, {
        "vocab_size": ("vocab_size", cfg["vocab_size"]), "hidden_size": ("dim", cfg["dim"]),
        "intermediate_size": ("hidden_dim", cfg["hidden_dim"]), "num_layers": ("n_layers", cfg["n_layers"]),
        "num_heads": ("n_heads", cfg["n_heads"]), "num_kv_heads": ("n_kv_heads", cfg["n_kv_heads"]),
        "head_dim": ("dim / n_heads", cfg["dim"] // cfg["n_heads"]), "rope_theta": ("", 10000.0),
        "rms_norm_eps": ("", 1e-5), "context_length": ("seq_len", cfg["seq_len"]),
        "tie_embeddings": ("sign of vocab_size", shared), "attention_bias": ("", False),
    })
    layout = _layout(cfg, shared, version)
    need = offset + 4 * sum(int(np.prod(s)) for _, s in layout)
    size = path.stat().st_size
    if size < need:
        raise ModelFormatError(f"{path}: truncated llama2.c checkpoint ({size} bytes, the header implies {need})")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = []
    pos = offset
    for name, shape in layout:
        n = 4 * int(np.prod(shape))
        if name:
            load = (lambda a=pos, b=pos + n: mm[a:b])
            if name.endswith("attn_q.weight"):
                load = permuted_loader(load, shape[0], cfg["n_heads"])
            elif name.endswith("attn_k.weight"):
                load = permuted_loader(load, shape[0], cfg["n_kv_heads"])
            tensors.append(SourceTensor(name, shape, dtypes.F32, load))
        pos += n
    tensors.sort(key=lambda t: (int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1, t.name))
    tokens, scores = read_tokenizer_bin(tokenizer, cfg["vocab_size"])
    tok_json = tokenizer_json.sentencepiece_bpe(tokens, scores, None, unk_id=0, bos_id=1, eos_id=2,
                                                add_bos=True, legacy_normalizer=True)
    tok = {"json": tok_json, "bos_token_id": 1, "eos_token_ids": [2], "add_bos": True, "pad_token_id": None}
    model = SourceModel("llama2c", path.stem, hp, tok, None, tensors)
    check_source_model(path, model)
    return model
