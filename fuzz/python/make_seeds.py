"""Regenerates the seed corpora under corpus/ from the shared real models (../shared/models next to
the checkout), cut down to 1-layer models of a few kilobytes so that mutations stay fast:

- gguf/: SmolLM2-135M-Instruct's GGUF metadata with its first 256 tokens and the merges among them
  (byte-level BPE, pre-tokenizer `smollm`, and a `llama-bpe` variant whose Split regex the
  tokenizer runs), its ChatML template, and Q4_1/Q8_0 blocks taken from its tensors; plus a
  SentencePiece (`llama`) vocabulary cut from ggml-vocab-llama-spm.gguf;
- llama2c/: stories260K's legacy (v0) and "ak42" (v1) layouts with its first 64 tokens;
- hf.base/ and hf_config/, safetensors/, tokenizer_json/: a 1-layer f16 checkpoint cut from
  stories260K's Hugging Face directory, and its files one by one;
- chat_template/: SmolLM2's template and the common template idioms (system message handling,
  loop.first/last, namespace, tojson of tools, raise_exception), each with a conversation.

Files named `regress-*` are inputs the fuzzers found; this script never touches them. Seeds named
`refused-*` are valid-looking inputs the converter must refuse (they reach its later checks).
Run: python fuzz/python/make_seeds.py   (needs the `gguf` package of the test extra)
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SHARED = HERE.parents[2] / "shared"
SMOLLM2 = SHARED / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SPM_VOCAB = SHARED / "data" / "tokenizers" / "ggml-vocab-llama-spm.gguf"
STORIES = SHARED / "models" / "stories260K"

HIDDEN, HEADS, KV_HEADS, FFN = 32, 2, 1, 64
HF_SEP = b"\n\x00NEXT-FILE\x00\n"
L2C_SEP = b"\xffTOKENIZER.BIN\xff"
MSG_SEP = b"\n\x00MESSAGES\x00\n"


def _fresh(name: str) -> Path:
    d = CORPUS / name
    d.mkdir(parents=True, exist_ok=True)
    for p in d.iterdir():
        if not p.name.startswith("regress-"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return d


# -- GGUF ------------------------------------------------------------------------------------------

def _rows(reader: gguf.GGUFReader, name: str, n_rows: int, row_bytes: int) -> np.ndarray:
    t = next(t for t in reader.tensors if t.name == name)
    return np.asarray(t.data).reshape(-1).view(np.uint8)[:n_rows * row_bytes].reshape(n_rows, row_bytes)


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def _tiny_gguf(path: Path, vocab: dict, *, untied: bool = False, bias: bool = False) -> None:
    src = gguf.GGUFReader(SMOLLM2)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("smollm2-cut")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    for key, value in vocab.items():
        if key == "tokenizer.ggml.model":
            w.add_tokenizer_model(value)
        elif key == "tokenizer.ggml.pre":
            w.add_tokenizer_pre(value)
        elif key == "tokenizer.ggml.tokens":
            w.add_token_list(value)
        elif key == "tokenizer.ggml.token_type":
            w.add_token_types(value)
        elif key == "tokenizer.ggml.merges":
            w.add_token_merges(value)
        elif key == "tokenizer.ggml.scores":
            w.add_token_scores(value)
        elif key == "tokenizer.chat_template":
            w.add_chat_template(value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        else:
            w.add_uint32(key, value)
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    q8, q41 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1
    w.add_tensor("token_embd.weight", _rows(src, "token_embd.weight", n_vocab, 34), raw_dtype=q8)
    norm = np.asarray(next(t for t in src.tensors if t.name == "blk.0.attn_norm.weight").data)[:HIDDEN]
    w.add_tensor("blk.0.attn_norm.weight", norm.astype(np.float32))
    kv = KV_HEADS * HIDDEN // HEADS
    for name, rows in (("attn_q", HIDDEN), ("attn_k", kv), ("attn_v", kv), ("attn_output", HIDDEN),
                       ("ffn_gate", FFN), ("ffn_up", FFN)):
        w.add_tensor(f"blk.0.{name}.weight", _rows(src, f"blk.0.{name}.weight", rows, 20), raw_dtype=q41)
        if bias and name in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"blk.0.{name}.bias", norm[:rows].astype(np.float32) * 0.01)
    w.add_tensor("blk.0.ffn_down.weight", _rows(src, "blk.0.ffn_down.weight", HIDDEN, 40), raw_dtype=q41)
    w.add_tensor("blk.0.ffn_norm.weight", norm.astype(np.float32))
    w.add_tensor("output_norm.weight", norm.astype(np.float32))
    if untied:
        w.add_tensor("output.weight", _rows(src, "token_embd.weight", n_vocab, 34), raw_dtype=q8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_seeds() -> None:
    d = _fresh("gguf")
    src = gguf.GGUFReader(SMOLLM2)
    tokens = _field(src, "tokenizer.ggml.tokens")[:256]
    keep = set(tokens)
    merges = [m for m in _field(src, "tokenizer.ggml.merges")
              if all(p in keep for p in m.split(" ")) and m.replace(" ", "") in keep]
    bpe = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": tokens,
           "tokenizer.ggml.token_type": [int(t) for t in _field(src, "tokenizer.ggml.token_type")[:256]],
           "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
           "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.add_bos_token": False,
           "tokenizer.chat_template": _field(src, "tokenizer.chat_template")}
    _tiny_gguf(d / "smollm2-cut.gguf", bpe)
    _tiny_gguf(d / "smollm2-cut-llama-bpe-untied-bias.gguf", {**bpe, "tokenizer.ggml.pre": "llama-bpe"},
               untied=True, bias=True)
    spm = gguf.GGUFReader(SPM_VOCAB)
    n = 300
    _tiny_gguf(d / "llama-spm-cut.gguf", {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": _field(spm, "tokenizer.ggml.tokens")[:n],
        "tokenizer.ggml.scores": [float(s) for s in _field(spm, "tokenizer.ggml.scores")[:n]],
        "tokenizer.ggml.token_type": [int(t) for t in _field(spm, "tokenizer.ggml.token_type")[:n]],
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True})


# -- llama2.c ---------------------------------------------------------------------------------------

def llama2c_seeds() -> None:
    d = _fresh("llama2c")
    raw = (STORIES / "stories260K.bin").read_bytes()
    floats = np.frombuffer(raw, dtype=np.float32, offset=28)
    dim, hidden, layers, heads, kv_heads, vocab, seq = 16, 32, 1, 2, 1, 64, 32
    kv = kv_heads * dim // heads
    sizes = {"embed": vocab * dim, "attn_norm": dim, "wq": dim * dim, "wk": kv * dim, "wv": kv * dim,
             "wo": dim * dim, "ffn_norm": dim, "w1": hidden * dim, "w2": dim * hidden, "w3": hidden * dim,
             "final_norm": dim, "freq": seq * dim // heads // 2 * 2}
    parts, pos = {}, 0
    for name, n in sizes.items():  # consecutive stretches of stories260K's own weights
        parts[name] = floats[pos:pos + n].tobytes()
        pos += n
    v0 = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq) + b"".join(parts.values())
    v1_head = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hidden, layers, heads, kv_heads, vocab, seq, 1)
    v1 = v1_head + b"\0" * (256 - len(v1_head)) + b"".join(
        parts[k] for k in ("attn_norm", "ffn_norm", "final_norm", "embed", "wq", "wk", "wv", "wo", "w1", "w2", "w3"))
    tok = (STORIES / "tok512.bin").read_bytes()
    out, p = [tok[:4]], 4
    for _ in range(vocab):
        (n,) = struct.unpack_from("<i", tok, p + 4)
        out.append(tok[p:p + 8 + n])
        p += 8 + n
    tok64 = b"".join(out)
    (CORPUS / "llama2c.tokenizer.bin").write_bytes(tok64)
    (d / "v0.bin").write_bytes(v0 + L2C_SEP + tok64)
    (d / "v1.bin").write_bytes(v1 + L2C_SEP + tok64)
    (d / "v0-untied.bin").write_bytes(struct.pack("<7i", dim, hidden, layers, heads, kv_heads, -vocab, seq)
                                      + v0[28:] + parts["embed"])


# -- Hugging Face -----------------------------------------------------------------------------------

def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header, blobs, pos = {}, [], 0
    for name, arr in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": {np.float16: "F16", np.float32: "F32"}[arr.dtype.type],
                        "shape": list(arr.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def hf_seeds() -> None:
    from safetensors.numpy import load_file
    sd = load_file(STORIES / "hf" / "model.safetensors")
    dim, ffn, heads, kv_heads = 16, 32, 2, 1
    kv = kv_heads * dim // heads
    cut = {"model.embed_tokens.weight": (512, dim), "model.norm.weight": (dim,)}
    for suffix, shape in (("input_layernorm.weight", (dim,)), ("post_attention_layernorm.weight", (dim,)),
                          ("self_attn.q_proj.weight", (dim, dim)), ("self_attn.k_proj.weight", (kv, dim)),
                          ("self_attn.v_proj.weight", (kv, dim)), ("self_attn.o_proj.weight", (dim, dim)),
                          ("mlp.gate_proj.weight", (ffn, dim)), ("mlp.up_proj.weight", (ffn, dim)),
                          ("mlp.down_proj.weight", (dim, ffn))):
        cut[f"model.layers.0.{suffix}"] = shape
    tensors = {n: sd[n][tuple(slice(0, s) for s in shape)].astype(np.float32 if len(shape) == 1 else np.float16)
               for n, shape in cut.items()}
    config = json.loads((STORIES / "hf" / "config.json").read_text())
    config.update(hidden_size=dim, intermediate_size=ffn, num_hidden_layers=1, num_attention_heads=heads,
                  num_key_value_heads=kv_heads, max_position_embeddings=64, torch_dtype="float16")
    base = CORPUS / "hf.base"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    files = {"config.json": json.dumps(config, indent=2).encode(),
             "tokenizer_config.json": (STORIES / "hf" / "tokenizer_config.json").read_bytes(),
             "generation_config.json": (STORIES / "hf" / "generation_config.json").read_bytes(),
             "tokenizer.json": (STORIES / "hf" / "tokenizer.json").read_bytes(),
             "model.safetensors": _safetensors(tensors)}
    for name, data in files.items():
        (base / name).write_bytes(data)
    _fresh("safetensors")
    (CORPUS / "safetensors" / "stories-cut.safetensors").write_bytes(files["model.safetensors"])
    _fresh("tokenizer_json")
    (CORPUS / "tokenizer_json" / "stories.tokenizer.json").write_bytes(files["tokenizer.json"])
    # byte-level BPE with a Split regex pre-tokenizer, as the GGUF import builds it for llama-bpe
    from edgert.converters import tokenizer_json
    src = gguf.GGUFReader(SMOLLM2)
    tokens = _field(src, "tokenizer.ggml.tokens")[:512]
    keep = set(tokens)
    merges = [m for m in _field(src, "tokenizer.ggml.merges")
              if all(p in keep for p in m.split(" ")) and m.replace(" ", "") in keep]
    text = tokenizer_json.byte_level_bpe(tokens, merges, "llama-bpe", None, bos_id=1, eos_id=2)
    (CORPUS / "tokenizer_json" / "smollm2-cut-llama-bpe.tokenizer.json").write_text(text, encoding="utf-8")
    d = _fresh("hf_config")
    (d / "stories-cut").write_bytes(HF_SEP.join(files[n] for n in ("config.json", "tokenizer_config.json",
                                                                     "generation_config.json")))
    qwen = dict(config, architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False)
    tcfg = json.loads(files["tokenizer_config.json"])
    tcfg["chat_template"] = _field(src, "tokenizer.chat_template")
    (d / "refused-qwen2-no-bias").write_bytes(json.dumps(qwen).encode() + HF_SEP + json.dumps(tcfg).encode())
    llama3 = dict(config, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    (d / "llama3-rope").write_bytes(json.dumps(llama3).encode())


# -- chat templates ---------------------------------------------------------------------------------

_TEMPLATES = {
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
              "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
              "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
              "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
              "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
              "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
              "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
              "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
              "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "llama3-tools": "{{- bos_token }}{%- set ns = namespace(system='') %}{%- for m in messages %}"
                    "{%- if m['role'] == 'system' %}{%- set ns.system = ns.system + m['content'] | trim %}"
                    "{%- endif %}{%- endfor %}<|start_header_id|>system<|end_header_id|>\n\n"
                    "{{ ns.system }}{%- if tools is defined %}{{ tools | tojson(indent=4) }}{%- endif %}<|eot_id|>"
                    "{%- for m in messages if m['role'] != 'system' %}<|start_header_id|>{{ m['role'] }}"
                    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{%- endfor %}"
                    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}",
    "mistral": "{{ bos_token }}{% for message in messages %}{% if loop.last and message['role'] == 'user' %}"
               "[INST] {{ message['content'] }} [/INST]{% elif message['role'] == 'assistant' %}"
               "{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}",
    "macros": "{% macro render(m) %}{{ m.role|upper }}: {{ m.content|replace('\\n', ' ')|truncate(200) }}"
              "{% endmacro %}{% for m in messages|selectattr('role', 'ne', 'tool')|list %}{{ render(m) }}\n"
              "{% endfor %}{{ messages|map(attribute='content')|join(' | ') }}{{ strftime_now('%Y-%m-%d') }}"
              "{% for i in range(3) %}{{ loop.index }}{{ '%02d' % i }}{% endfor %}{{ (messages|length) * 2 }}",
}
_MESSAGES = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi!"},
             {"role": "assistant", "content": "Hello. How can I help?"},
             {"role": "user", "content": "What is 2+2?\nThanks."}]


def chat_template_seeds() -> None:
    d = _fresh("chat_template")
    src = gguf.GGUFReader(SMOLLM2)
    templates = dict(_TEMPLATES, smollm2=_field(src, "tokenizer.chat_template"))
    for name, text in templates.items():
        (d / name).write_bytes(text.encode() + MSG_SEP + json.dumps(_MESSAGES).encode())


if __name__ == "__main__":
    gguf_seeds()
    llama2c_seeds()
    hf_seeds()
    chat_template_seeds()
    for p in sorted(CORPUS.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:8d}  {p.relative_to(CORPUS)}")
