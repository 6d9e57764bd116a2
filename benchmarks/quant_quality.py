#!/usr/bin/env python3
"""quant_quality.py — perplexity and KL divergence of edgert's quantizers against llama.cpp's, on the
real SmolLM2-135M from the same higher-precision source, measured with the same windows.

The source: the only real SmolLM2 checkpoint here is Q4_1; dequantized to f32 (by the `gguf`
package) it is the teacher. From it:
  edgert-<recipe>   edgert's own quantizer (`edgert convert --quantize <recipe>`)
  llama-<recipe>    llama.cpp's quantizer (llama_model_quantize from llama-cpp-python's vendored
                    llama.cpp, the `llama-quantize` code path, no importance matrix), imported into
                    .edgt byte for byte
Each file's wikitext-2 test perplexity (context 512) and mean KLD against the f32 teacher come from
`edgert perplexity` on the same windows, so the two quantizers are compared on one runtime.

    python benchmarks/quant_quality.py [--max-tokens 0] [--recipes q4_k_m q3_k_m q4_0 q3_k]

Needs llama_cpp (bench venv, or `pip install` of the cached wheel) for the llama.cpp rows;
writes benchmarks/results/quant-quality-<date>.json and .md. Slow on 2 cores: ~2-3 min per file
per 32k tokens (--max-tokens 0 is the whole text, ~290k tokens).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" if (REPO.parent / "shared").exists() else Path("/work/shared")
SOURCE = SHARED / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = SHARED / "data/text/wikitext-2-raw-test.txt"
CACHE = Path(os.environ.get("BENCH_CACHE", "/work/bench-cache")) / "quality"
# edgert recipe -> llama.cpp ftype constant (None: llama.cpp has no such mixture)
LLAMA_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
                "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
                "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q3_k": None, "q3_0": None}


def log(msg: str) -> None:
    print(f"[quant_quality {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def write_f32_gguf(src: Path, out: Path) -> None:
    """src's tensors dequantized to f32 by the gguf package, metadata copied (a llama.cpp-ready GGUF)."""
    import gguf
    import numpy as np
    r = gguf.GGUFReader(str(src))
    arch = str(r.fields["general.architecture"].contents())
    w = gguf.GGUFWriter(str(out) + ".tmp", arch)
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        w.add_tensor(t.name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    Path(str(out) + ".tmp").rename(out)


def llama_quantize(src: Path, out: Path, ftype: str) -> None:
    code = ("import sys, llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
            "p.ftype = getattr(llama_cpp, sys.argv[3]); p.nthread = 2; "
            "sys.exit(1 if llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p) else 0)")
    subprocess.run([sys.executable, "-c", code, str(src), str(out) + ".tmp", ftype], check=True)
    Path(str(out) + ".tmp").rename(out)


def ggml_agreement() -> str:
    """edgert's numpy quantizers against ggml's own (ggml_quantize_chunk from llama-cpp-python's
    libggml-base, no importance matrix) on random tensors: RMSE ratio and identical blocks."""
    import ctypes

    import llama_cpp
    import numpy as np
    from edgert.converters import dtypes as D
    from edgert.converters import quantize as Q
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(0)
    lines = ["| data | type | RMSE edgert / ggml | identical blocks |", "|---|---|---|---|"]
    for name, x in (("N(0,1)", rng.normal(size=(256, 1024))), ("t(3)·0.02", rng.standard_t(3, size=(256, 1024)) * 0.02)):
        x = np.ascontiguousarray(x, np.float32)
        for dt in (D.Q3_K, D.Q4_K, D.Q5_K, D.Q6_K, D.IQ4_NL, D.IQ4_XS, D.Q5_0, D.Q5_1):
            theirs = np.zeros(x.size // dt.block_size * dt.block_bytes, np.uint8)
            lib.ggml_quantize_chunk(dt.id, x.ctypes.data, theirs.ctypes.data, 0, x.shape[0], x.shape[1], None)
            ours = Q.encode(x, dt)
            err = [np.sqrt(np.mean((Q.decode(r, dt, x.shape) - x) ** 2)) for r in (ours, theirs)]
            same = np.mean(np.all(ours.reshape(-1, dt.block_bytes) == theirs.reshape(-1, dt.block_bytes), axis=1))
            lines.append(f"| {name} | {dt.name} | {err[0] / err[1]:.4f} | {same:.3f} |")
    return "\n".join(lines) + "\n"


def edgert(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "edgert", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"edgert {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["q4_0", "q4_k_m", "q3_k_m", "q3_k"])
    ap.add_argument("--max-tokens", type=int, default=32768, help="first N tokens of the text (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--agreement-only", action="store_true", help="only compare the quantizers with ggml's")
    args = ap.parse_args(argv)
    if args.agreement_only:
        print(ggml_agreement())
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    f32_gguf = CACHE / "smollm2-f32.gguf"
    if not f32_gguf.exists():
        log(f"writing {f32_gguf} (Q4_1 dequantized by gguf)")
        write_f32_gguf(SOURCE, f32_gguf)
    files: dict[str, Path] = {}
    teacher = CACHE / "smollm2-f32.edgt"
    if not teacher.exists():
        edgert("convert", str(f32_gguf), "-o", str(teacher), "--no-progress")
    files["f32 (teacher)"] = teacher
    agreement = ""
    try:
        import llama_cpp  # noqa: F401
        have_llama = True
        agreement = ggml_agreement()
        print(agreement)
    except ImportError:
        have_llama = False
        log("llama_cpp not importable: llama.cpp rows skipped")
    for recipe in args.recipes:
        mine = CACHE / f"edgert-{recipe}.edgt"
        if not mine.exists():
            log(f"edgert quantizing {recipe}")
            edgert("convert", str(f32_gguf), "-o", str(mine), "--quantize", recipe, "--no-progress")
        files[f"edgert {recipe}"] = mine
        ftype = LLAMA_FTYPES.get(recipe)
        if have_llama and ftype:
            g = CACHE / f"llama-{recipe}.gguf"
            if not g.exists():
                log(f"llama.cpp quantizing {recipe}")
                llama_quantize(f32_gguf, g, ftype)
            e = CACHE / f"llama-{recipe}.edgt"
            if not e.exists():
                edgert("convert", str(g), "-o", str(e), "--no-progress")
            files[f"llama.cpp {recipe}"] = e
    ref = CACHE / f"ref-logits-{args.max_tokens}.npz"
    rows = []
    for label, path in files.items():
        extra = ["--save-ref-logits", str(ref)] if label.startswith("f32") else ["--ref-logits", str(ref)]
        log(f"perplexity {label}")
        out = json.loads(edgert("perplexity", str(path), str(TEXT), "-c", "512", "--max-tokens", str(args.max_tokens),
                                "-t", str(args.threads), "--json", "--no-progress", *extra))
        info = json.loads(edgert("info", str(path), "--json"))
        rows.append({"file": label, "bytes": path.stat().st_size, "perplexity": out,
                     "tensor_types": info.get("tensor_types")})
        log(f"  {label}: {json.dumps({k: out[k] for k in out if k in ('ppl', 'kld', 'ppl_change')})}")
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"quant-quality-{stamp}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"SmolLM2-135M-Instruct, wikitext-2 test, context 512, first {args.max_tokens or 'all'} tokens, "
             "edgert perplexity (f16 KV)", "",
             "| file | MB | PPL | KLD vs f32 | tensor types |", "|---|---|---|---|---|"]
    for r in rows:
        p = r["perplexity"]
        kld = p.get("kld")
        lines.append(f"| {r['file']} | {r['bytes'] / 1e6:.1f} | {p['ppl']:.4f} | "
                     f"{'' if kld is None else f'{kld:.5f}'} | {r['tensor_types']} |")
    md = "\n".join(lines) + "\n" + ("\nQuantizers against ggml's, random tensors:\n\n" + agreement if agreement else "")
    (args.out / f"quant-quality-{stamp}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
