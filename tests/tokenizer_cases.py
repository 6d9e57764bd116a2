"""Shared inputs of the native tokenizer tests: the tokenizer.json variants edgert meets (built
from the shared fixtures, never written by hand), random Unicode strings, and tiny .edgt models
that carry a given tokenizer.json so the C API can be driven through edgert._edgert."""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

import numpy as np

from conftest import DATA, SMOLLM2_GGUF, STORIES

TOK = DATA / "tokenizers"
GPT2_GGUF, SPM_GGUF = TOK / "ggml-vocab-gpt-2.gguf", TOK / "ggml-vocab-llama-spm.gguf"


def llama_cpp_cases(gguf: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's test strings and the ids llama.cpp gives (`.inp` / `.out`)."""
    strings = (gguf.parent / (gguf.name + ".inp")).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    expected = (gguf.parent / (gguf.name + ".out")).read_text(encoding="utf-8").split("\n")
    strings = strings[:-1] if strings[-1] == "" else strings
    return [(s, [int(x) for x in e.split()]) for s, e in zip(strings, expected)]


@lru_cache(maxsize=1)
def tokenizer_variants() -> dict[str, dict]:
    """name -> {"json": tokenizer.json text, "bos", "eos", "add_bos"}: every tokenizer of the
    shared models and of the benchmark shapes, plus the Llama 3 and Qwen2 pre-tokenizers on
    GPT-2's vocabulary (their own files differ only in vocabulary size)."""
    from converters import tokenizer_json as tj
    from converters.gguf_reader import GGUFFile
    from converters.gguf_tokenizer import tokenizer_metadata

    out: dict[str, dict] = {}
    for name, path in (("smollm2", SMOLLM2_GGUF), ("gpt2", GPT2_GGUF), ("llama-spm", SPM_GGUF)):
        with GGUFFile(path) as g:
            meta = tokenizer_metadata(g)
            out[name] = {"json": meta["json"], "bos": meta["bos_token_id"],
                         "eos": meta["eos_token_ids"], "add_bos": meta["add_bos"]}
            if name == "gpt2":
                tokens, merges = g.get("tokenizer.ggml.tokens"), g.get("tokenizer.ggml.merges")
                types = [int(t) for t in g.get("tokenizer.ggml.token_type")]
    llama3 = json.loads(tj.byte_level_bpe(tokens, merges, "llama-bpe", types))
    llama3["model"]["ignore_merges"] = True  # as Meta's Llama 3 tokenizer.json
    qwen2 = json.loads(tj.byte_level_bpe(tokens, merges, "qwen2", types))
    qwen2["normalizer"] = {"type": "NFC"}  # as Qwen2's tokenizer.json
    for name, j in (("llama3", llama3), ("qwen2", qwen2)):
        out[name] = {"json": json.dumps(j), "bos": None, "eos": [50256], "add_bos": False}
    out["stories260k-hf"] = {"json": (STORIES / "hf" / "tokenizer.json").read_text(),
                             "bos": 1, "eos": [2], "add_bos": True}
    # the same model's llama2.c checkpoint: the converter writes tokenizer.json from tok512.bin
    from converters.llama2c import read_llama2c
    tok = read_llama2c(STORIES / "stories260K.bin", STORIES / "tok512.bin").tokenizer
    out["stories260k-llama2c"] = {"json": tok["json"], "bos": tok["bos_token_id"],
                                  "eos": tok["eos_token_ids"], "add_bos": tok["add_bos"]}
    # benchmarks/make_models.py's shapes: transformers' GGUF tokenizer converter output
    import transformers
    transformers.logging.set_verbosity_error()
    for name, path in (("smollm2-transformers", SMOLLM2_GGUF), ("tinyllama-transformers", SPM_GGUF)):
        t = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        out[name] = {"json": t.backend_tokenizer.to_str(), "bos": 1, "eos": [2],
                     "add_bos": name.startswith("tinyllama")}
    return out


def tiny_model(path: Path, tok: dict, vocab: int, chat_template: str | None = None) -> Path:
    """A 1-layer random llama .edgt whose metadata carries tok's tokenizer.json (weights do not
    matter to the tokenizer; vocab covers every id the tokenizer can produce)."""
    from converters.dtypes import F32
    from converters.edgt_file import write_edgt
    H, F, V = 16, 32, vocab
    rng = np.random.default_rng(0)
    t = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float32)
    tensors = [("token_embd.weight", F32, t(V, H)), ("output_norm.weight", F32, np.ones(H, np.float32))]
    for name, shape in (("attn_norm", (H,)), ("attn_q", (H, H)), ("attn_k", (H, H)), ("attn_v", (H, H)),
                        ("attn_output", (H, H)), ("ffn_norm", (H,)), ("ffn_gate", (F, H)),
                        ("ffn_up", (F, H)), ("ffn_down", (H, F))):
        tensors.append((f"blk.0.{name}.weight", F32, np.ones(shape, np.float32) if len(shape) == 1 else t(*shape)))
    meta = {
        "format": "edgert", "format_version": 1, "architecture": "llama", "name": "tokenizer-test",
        "hparams": {"vocab_size": V, "hidden_size": H, "intermediate_size": F, "num_layers": 1,
                    "num_heads": 2, "num_kv_heads": 2, "head_dim": 8, "rope_theta": 10000.0,
                    "rms_norm_eps": 1e-5, "context_length": 256, "tie_embeddings": True,
                    "attention_bias": False},
        "tokenizer": {"json": tok["json"], "bos_token_id": tok["bos"], "eos_token_ids": tok["eos"],
                      "add_bos": tok["add_bos"], "pad_token_id": None},
        "chat_template": chat_template,
    }
    return write_edgt(path, meta, tensors)


# ---- random Unicode strings -------------------------------------------------------------------

_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r\x0b\x0c",
    "'\u2019\"`", "sStTrReEvVmMlLdD\u017fK",  # contraction letters, long s (folds to s)
    ".,;:!?()[]{}<>|/\\-_=+*&^%$#@~", "éèêëàâäôöûüçñßøåæœ", "αβγδεζηθλμπσωΑΒΓΔ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГД", "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "あいうえおかきくけこアイウエオカキクケコ", "한국어안녕하세요", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "אבגדהוזחטיכלמנסעפצקרשת", "अआइईउऊऋएऐओऔकखगघङ्ािीुूृेैोौं", "กขฃคฅฆงจฉชซฌญฎฏ่้๊๋",
    "\u0300\u0301\u0302\u0303\u0308\u0327\u0323\u0307\u20dd\u0345\u0f71\u0f72",  # combining marks
    "😀😃😄😁🙂🙃😉😊👍🏽👩\u200d💻🇫🇷🏳️\u200d🌈❤️", "٠١٢٣٤٥٦٧٨٩۰۱۲۳߀०१२३½¼²³ⅠⅡⅢ①②",
    "\u00a0\u1680\u2000\u2003\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u0085\u180e\u200b\ufeff",
    "\u2581<0x41><s></s><unk><|im_start|><|im_end|><|endoftext|>",  # pieces of special tokens
    "\u1100\u1161\u11a8\uac00\u110b\u1173\u212b\u2126\u1e9b\u0323",  # jamo, NFC singletons
]


def _random_code_point(r: random.Random) -> str:
    while True:
        cp = r.randrange(0x10000) + (r.choice((0, 0, 0, 1, 2, 3, 14, 15)) << 16)
        if not 0xD800 <= cp < 0xE000 and cp != 0:
            return chr(cp)


def random_strings(n: int, seed: int) -> list[str]:
    """Mixed scripts, emoji, combining marks, unusual white space, digits of many scripts and any
    code point of the planes in use (assigned or not)."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(r.choice((1, 2, 3, 5, 8, 13, 21, 40, 80))):
            if r.random() < 0.08:
                parts.append(_random_code_point(r))
            else:
                pool = r.choice(_POOLS)
                i = r.randrange(len(pool))
                parts.append(pool[i] if r.random() < 0.7 else pool[i:i + r.randrange(1, 6)])
        out.append("".join(parts))
    return out


def random_invalid_utf8(n: int, seed: int) -> list[bytes]:
    """Valid text with one ill-formed sequence spliced in: stray continuation bytes, truncated
    sequences, overlongs, surrogates, code points above U+10FFFF, bytes 0xF5..0xFF."""
    r = random.Random(seed)
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf0\x80\x80\xaf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xc3",
           b"\xe2\x82", b"\xf0\x9f\x98"]
    out = []
    for s in random_strings(n, seed):
        b = s.encode("utf-8")
        cut = r.randrange(len(b) + 1)
        while 0 < cut < len(b) and (b[cut] & 0xC0) == 0x80:
            cut -= 1
        out.append(b[:cut] + r.choice(bad) + b[cut:])
    return out
