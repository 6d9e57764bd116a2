#!/usr/bin/env python3
"""make_models.py — random-weight models of real shapes for the benchmarks, one set of weights
written in every format the engines read.

For each shape (SmolLM2-135M, TinyLlama-1.1B) it writes, under --out (default
/work/bench-cache/models/<shape>/):

  hf/           a Hugging Face Llama checkpoint: config.json, model.safetensors (f16),
                tokenizer.json (+ tokenizer_config.json). These f16 weights are *the* weights; every
                other file is a quantization of them.
  q4_0.gguf     GGUF "pure" quantizations written with the `gguf` package: every 2-D weight
  q8_0.gguf     (token_embd and output included) in the named type, norms in f32. Q/K rows are
                permuted to llama.cpp's interleaved-RoPE convention, exactly as llama.cpp's
                convert_hf_to_gguf.py does, so llama.cpp runs them correctly.
  f16.gguf      every 2-D weight in f16 (the source for llama.cpp's own quantizer)
  q4_k_m.gguf   llama.cpp's Q4_K_M and Q3_K_M mixtures of f16.gguf, written by llama.cpp itself
  q3_k_m.gguf   (llama_model_quantize from llama-cpp-python's vendored llama.cpp: the code path of
                the `llama-quantize` tool) in the bench venv; skipped when llama_cpp is missing.
                Rows that are not whole 256-blocks (SmolLM2's 576) get llama.cpp's fallbacks
                (Q5_0 for Q4_K, IQ4_NL for Q3_K).
  ct2-int8/     CTranslate2 (`ct2-transformers-converter --quantization int8`), when installed.
  ort-int4/     onnxruntime-genai (`python -m onnxruntime_genai.models.builder -p int4 -e cpu`),
                when installed and its builder accepts the model.

Weights are N(0, 0.02) (the scale of real checkpoints, so nothing overflows in f16), norm weights 1,
from numpy's PCG64 with a fixed seed per tensor: the same seed gives byte-identical files. Random
weights make speed measurable, not text meaningful: decode speed does not depend on the values.

Tokenizers: the SmolLM2 shape reuses SmolLM2's own tokenizer (from the real GGUF in shared/models,
chat template included); the TinyLlama shape reuses llama.cpp's Llama SPM vocabulary
(shared/data/tokenizers/ggml-vocab-llama-spm.gguf, 32000 tokens — TinyLlama's own).

Models are cached: a file that exists is not rewritten unless --force. Usage:

    python benchmarks/make_models.py [--shapes smollm2-135m tinyllama-1.1b] [--force]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGERT_SHARED", REPO.parent / "shared"))
if not SHARED.exists():
    SHARED = Path("/work/shared")
DEFAULT_OUT = Path(os.environ.get("BENCH_CACHE", "/work/bench-cache")) / "models"
SMOLLM2_GGUF = SHARED / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SPM_VOCAB = SHARED / "data/tokenizers/ggml-vocab-llama-spm.gguf"

SEED = 20261122
INIT_STD = 0.02


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool
    rope_theta: float
    context: int       # set to 8192 for both so the 4096-deep KV benchmark fits
    tokenizer_gguf: Path
    ggufs: tuple[str, ...]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


SHAPES = {
    "smollm2-135m": Shape("smollm2-135m", 576, 30, 9, 3, 1536, 49152, True, 100000.0, 8192,
                          SMOLLM2_GGUF, ("q4_0", "q8_0", "f16")),
    "tinyllama-1.1b": Shape("tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, False, 10000.0, 8192,
                            LLAMA_SPM_VOCAB, ("q4_0", "f16")),
}


def log(msg: str) -> None:
    print(f"[make_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Weights

def hf_tensor_specs(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """HF Llama tensor names and shapes, in a fixed order (the order fixes the per-tensor seeds)."""
    specs: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (s.vocab, s.hidden))]
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    for i in range(s.layers):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (s.hidden,)),
            (p + "self_attn.q_proj.weight", (q, s.hidden)),
            (p + "self_attn.k_proj.weight", (kv, s.hidden)),
            (p + "self_attn.v_proj.weight", (kv, s.hidden)),
            (p + "self_attn.o_proj.weight", (s.hidden, q)),
            (p + "post_attention_layernorm.weight", (s.hidden,)),
            (p + "mlp.gate_proj.weight", (s.ffn, s.hidden)),
            (p + "mlp.up_proj.weight", (s.ffn, s.hidden)),
            (p + "mlp.down_proj.weight", (s.hidden, s.ffn)),
        ]
    specs.append(("model.norm.weight", (s.hidden,)))
    if not s.tied:
        specs.append(("lm_head.weight", (s.vocab, s.hidden)))
    return specs


def random_tensor(index: int, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 1:  # norm weights: 1, as at initialisation
        return np.ones(shape, dtype=np.float16)
    rng = np.random.Generator(np.random.PCG64([SEED, index]))
    return (rng.standard_normal(shape, dtype=np.float32) * INIT_STD).astype(np.float16)


def write_hf(s: Shape, out: Path) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: random_tensor(i, shape) for i, (name, shape) in enumerate(hf_tensor_specs(s))}
    log(f"{s.name}: {sum(t.size for t in tensors.values()) / 1e6:.1f} M parameters")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": s.hidden, "intermediate_size": s.ffn, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "head_dim": s.head_dim,
        "vocab_size": s.vocab, "max_position_embeddings": s.context, "rope_theta": s.rope_theta,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": s.tied, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "initializer_range": INIT_STD,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16", "dtype": "float16",
        "use_cache": True, "pretraining_tp": 1, "rope_scaling": None,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, indent=2) + "\n")
    write_hf_tokenizer(s, out)
    (out / "make_models.json").write_text(json.dumps(
        {"shape": {k: str(v) for k, v in asdict(s).items()}, "seed": SEED, "init_std": INIT_STD},
        indent=2) + "\n")


def write_hf_tokenizer(s: Shape, out: Path) -> None:
    """tokenizer.json from the GGUF vocabulary, through transformers' GGUF tokenizer converter."""
    from transformers import AutoTokenizer

    src = s.tokenizer_gguf
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    tok.save_pretrained(str(out))
    if len(tok) < s.vocab:
        log(f"{s.name}: tokenizer has {len(tok)} tokens < vocab {s.vocab} (ids above are unused)")


# ---------------------------------------------------------------------------------------------
# GGUF

def permute_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation (convert_hf_to_gguf.py LlamaModel.permute): HF's
    rotate_half RoPE pairs dim i with i + d/2; ggml's "normal" RoPE pairs 2i with 2i+1."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{HF_TO_GGUF[rest]}"


def copy_tokenizer_fields(writer, src: Path) -> None:
    import gguf

    r = gguf.GGUFReader(str(src))
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)


def write_gguf(s: Shape, hf_dir: Path, out: Path, qtype_name: str) -> None:
    import gguf
    from safetensors import safe_open

    qtype = {"q4_0": gguf.GGMLQuantizationType.Q4_0,
             "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "f16": gguf.GGMLQuantizationType.F16}[qtype_name]
    file_type = {"q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                 "f16": gguf.LlamaFileType.MOSTLY_F16}[qtype_name]
    tmp = out.with_suffix(".gguf.tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"random {s.name} {qtype_name}")
    w.add_context_length(s.context)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_rope_freq_base(s.rope_theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(s.head_dim)
    w.add_vocab_size(s.vocab)
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    copy_tokenizer_fields(w, s.tokenizer_gguf)
    with safe_open(str(hf_dir / "model.safetensors"), "np") as f:
        for name, _ in hf_tensor_specs(s):
            t = f.get_tensor(name).astype(np.float32)
            if name.endswith("q_proj.weight"):
                t = permute_for_gguf(t, s.heads)
            elif name.endswith("k_proj.weight"):
                t = permute_for_gguf(t, s.kv_heads)
            if t.ndim == 1:
                w.add_tensor(gguf_name(name), t)
            else:
                w.add_tensor(gguf_name(name), gguf.quants.quantize(t, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    tmp.rename(out)


# llama.cpp's own quantizer (llama_model_quantize, what the `llama-quantize` tool calls)
LLAMA_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
                "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
LLAMA_QUANTIZE = """
import sys, llama_cpp
src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, ftype)
p.nthread = 2
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(1 if rc else 0)
"""


def llama_quantize(src: Path, out: Path, recipe: str, logdir: Path) -> bool:
    """out = llama.cpp's `recipe` mixture of the GGUF src, written by llama.cpp."""
    py = tool_python()
    if not have_module(py, "llama_cpp"):
        log("llama_cpp not installed: skipping llama.cpp's own quantizations")
        return False
    tmp = out.with_suffix(".gguf.tmp")
    ok = run_logged([py, "-c", LLAMA_QUANTIZE, str(src), str(tmp), LLAMA_FTYPES[recipe]],
                    logdir / f"llama-quantize-{out.parent.name}-{recipe}.log", tmp)
    if ok:
        tmp.rename(out)
    return ok


# ---------------------------------------------------------------------------------------------
# Peers' formats

def tool_python() -> str:
    """The interpreter that has the peers (the bench venv when this runs from another one)."""
    for cand in (os.environ.get("BENCH_PYTHON"), "/work/bench-venv/bin/python", sys.executable):
        if cand and Path(cand).exists():
            return cand
    return sys.executable


def have_module(py: str, mod: str) -> bool:
    return subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode == 0


def write_ct2(hf_dir: Path, out: Path, logdir: Path) -> bool:
    py = tool_python()
    if not have_module(py, "ctranslate2"):
        log("ctranslate2 not installed: skipping the CT2 model")
        return False
    conv = Path(py).parent / "ct2-transformers-converter"
    cmd = [str(conv), "--model", str(hf_dir), "--output_dir", str(out),
           "--quantization", "int8", "--force"]
    return run_logged(cmd, logdir / f"ct2-convert-{out.parent.name}.log", out)


def write_ort(hf_dir: Path, out: Path, logdir: Path) -> bool:
    py = tool_python()
    if not have_module(py, "onnxruntime_genai"):
        log("onnxruntime-genai not installed: skipping the ORT model")
        return False
    cache = out.parent / "ort-cache"
    cmd = [py, "-m", "onnxruntime_genai.models.builder", "-m", str(hf_dir), "-i", str(hf_dir),
           "-o", str(out), "-p", "int4", "-e", "cpu", "-c", str(cache)]
    ok = run_logged(cmd, logdir / f"ort-build-{out.parent.name}.log", out)
    shutil.rmtree(cache, ignore_errors=True)
    return ok


def run_logged(cmd: list[str], logfile: Path, out: Path) -> bool:
    log(f"running {' '.join(cmd)}  (log: {logfile})")
    with open(logfile, "w") as fh:
        rc = subprocess.run(["nice", "-n", "10", *cmd], stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        log(f"failed (exit {rc}); see {logfile}")
        shutil.rmtree(out, ignore_errors=True)
        return False
    return True


# ---------------------------------------------------------------------------------------------

def make_shape(s: Shape, root: Path, force: bool, peers: bool) -> dict[str, str]:
    d = root / s.name
    d.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    hf = d / "hf"
    if force or not (hf / "model.safetensors").exists() or not (hf / "tokenizer.json").exists():
        log(f"{s.name}: writing HF checkpoint to {hf}")
        write_hf(s, hf)
    made["hf"] = str(hf)
    for q in s.ggufs:
        g = d / f"{q}.gguf"
        if force or not g.exists():
            log(f"{s.name}: writing {g}")
            write_gguf(s, hf, g, q)
        made[f"gguf-{q}"] = str(g)
    for r in ("q4_k_m", "q3_k_m"):
        g = d / f"{r}.gguf"
        if force or not g.exists():
            log(f"{s.name}: llama.cpp quantizing f16.gguf to {g}")
            if not llama_quantize(d / "f16.gguf", g, r, root.parent):
                continue
        made[f"gguf-{r}"] = str(g)
    if peers:
        ct2 = d / "ct2-int8"
        if force or not (ct2 / "model.bin").exists():
            if write_ct2(hf, ct2, root.parent):
                made["ct2-int8"] = str(ct2)
        else:
            made["ct2-int8"] = str(ct2)
        ort = d / "ort-int4"
        if force or not (ort / "genai_config.json").exists():
            if write_ort(hf, ort, root.parent):
                made["ort-int4"] = str(ort)
        else:
            made["ort-int4"] = str(ort)
    return made


def check_gguf_against_hf(s: Shape, root: Path, qtype: str = "q8_0") -> float:
    """Greedy-free sanity check that the GGUF is the HF checkpoint: llama.cpp's last-position
    logits on the GGUF against transformers' on the f16 checkpoint, for one random prompt.
    Returns the Pearson correlation (a wrong Q/K permutation gives far below 0.99)."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    d = root / s.name
    ids = [int(i) for i in np.random.default_rng(1).integers(4, s.vocab, 48)]
    hf = AutoModelForCausalLM.from_pretrained(str(d / "hf"), dtype=torch.float32)
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0, -1].numpy()
    llm = Llama(str(d / f"{qtype}.gguf"), n_ctx=64, n_threads=2, verbose=False)
    llm.eval(ids)
    got = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(s.vocab,)).copy()
    llm.close()
    corr = float(np.corrcoef(ref, got)[0, 1])
    log(f"{s.name} {qtype}: llama.cpp vs transformers last logits: corr {corr:.5f}, "
        f"max |diff| {np.abs(ref - got).max():.4f} (logit std {ref.std():.4f})")
    return corr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    ap.add_argument("--no-peers", action="store_true", help="skip the CT2 and ORT conversions")
    ap.add_argument("--check", action="store_true",
                    help="check llama.cpp on each GGUF against transformers on the HF weights")
    args = ap.parse_args(argv)
    if args.check:
        # Random weights make attention nearly uniform, so RoPE (and a wrong Q/K permutation)
        # moves the logits little: measured on the SmolLM2 shape, Q8_0 gives corr 0.9995 with the
        # permutation and 0.996 without. Only Q8_0 is judged (Q4_0's own error gives ~0.90).
        bad = []
        for n in args.shapes:
            for q in SHAPES[n].ggufs:
                corr = check_gguf_against_hf(SHAPES[n], args.out, q)
                if q == "q8_0" and corr < 0.999:
                    bad.append(f"{n} {q}")
        if bad:
            log(f"FAILED: {', '.join(bad)}")
        return 1 if bad else 0
    manifest = {}
    for name in args.shapes:
        manifest[name] = make_shape(SHAPES[name], args.out, args.force, not args.no_peers)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
