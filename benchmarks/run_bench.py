#!/usr/bin/env python3
"""run_bench.py — edgert against llama.cpp, CTranslate2 and ONNX Runtime GenAI, in one run, on the
same weights, at the same thread count, every engine in its own process, back to back.

    python benchmarks/run_bench.py                 # everything (about 15-25 min on 2 cores)
    python benchmarks/run_bench.py --quick         # 3 rounds, SmolLM2 shape only
    python benchmarks/run_bench.py --kv-depth 4096 # also issue 4's decode-at-depth comparison

What one run does (benchmarks/README.md explains every number):
  1. makes the random-weight models (make_models.py, cached) and converts the GGUFs to .edgt;
  2. measures the machine's read bandwidth (membw.c, median of runs) at the benchmark's thread
     count, and from it each model's decode roofline = bandwidth / bytes read per decoded token;
  3. for each model, `--rounds` rounds; each round starts one worker process per engine
     (engines.py), in an order rotated every round so slow drift of a noisy machine does not favour
     one engine; each worker loads the model, warms up, and times prefill of a 512-token prompt
     (TTFT), decode of 128 tokens, and optionally TTFT of a 2048-token prompt and decode after 4096
     tokens of context. Figures are medians over all rounds;
  4. writes results/<date>-<host>.json, results/latest.md (the table) and results/latest.png.

Nothing here is a timed test: the numbers are ratios against peers measured minutes apart on the
same machine. Do not run it while a build or another benchmark is running.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from engines import load_protocol  # edgert/bench.py: the one timing protocol and its summary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("BENCH_CACHE", "/work/bench-cache"))
BENCH_VENV = Path(os.environ.get("BENCH_VENV", "/work/bench-venv"))
SHARED = REPO.parent / "shared" if (REPO.parent / "shared").exists() else Path("/work/shared")
REAL_SMOLLM2 = SHARED / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
RESULTS = HERE / "results"


def log(msg: str) -> None:
    print(f"[run_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Interpreters: the peers live in the bench venv; edgert wherever its native module imports.

def bench_python() -> str:
    py = BENCH_VENV / "bin" / "python"
    return str(py) if py.exists() else sys.executable


def python_that_imports(module: str, candidates: list[str]) -> Optional[str]:
    for py in candidates:
        if py and Path(py).exists() and subprocess.run(
                [py, "-c", f"import {module}"], capture_output=True, cwd="/").returncode == 0:
            return py
    return None


def edgert_python(explicit: Optional[str]) -> Optional[str]:
    # The developers' venv first: it holds the editable, in-place build of this checkout, where
    # the bench venv holds a snapshot from setup time.
    cands = [explicit] if explicit else ["/work/venv/bin/python", bench_python(), sys.executable]
    return python_that_imports("edgert._edgert", [c for c in cands if c])


# ---------------------------------------------------------------------------------------------
# Models

@dataclass
class Case:
    """One model row group: a GGUF (edgert and llama.cpp), optionally CT2/ORT of the same weights."""

    label: str                 # e.g. "SmolLM2-135M shape"
    shape: str                 # make_models shape, or "real"
    dtype: str                 # GGUF weight type
    gguf: Path
    ct2: Optional[Path] = None
    ort: Optional[Path] = None
    edgt: Optional[Path] = None
    # edgert's file made by its own quantizer (HF dir, recipe) instead of converted from `gguf`
    edgt_recipe: Optional[tuple[Path, str]] = None
    notes: list[str] = field(default_factory=list)


def make_models(shapes: list[str]) -> None:
    cmd = [bench_python(), str(HERE / "make_models.py"), "--shapes", *shapes]
    log("making models (cached): " + " ".join(cmd[1:]))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def cases_for(shapes: list[str], with_real: bool, only_dtypes: Optional[list[str]] = None) -> list[Case]:
    root = CACHE / "models"
    out: list[Case] = []
    labels = {"smollm2-135m": "SmolLM2-135M shape", "tinyllama-1.1b": "TinyLlama-1.1B shape"}
    # q4_k_m: llama.cpp's own Q4_K_M file, run by llama.cpp and imported byte for byte by edgert.
    # q4_k_m-edgert: edgert's own `--quantize q4_k_m` of the HF weights against llama.cpp's Q4_K_M
    # file of the same weights (issue 11 asks for both files).
    # q3_k: edgert's 3-bit recipe (q3_k, q3_0 where rows are not whole 256-blocks) made from the HF
    # weights by edgert's quantizer; llama.cpp runs its own Q3_K_M of the same weights.
    dtypes = {"smollm2-135m": ["q4_0", "q8_0", "q4_k_m", "q4_k_m-edgert", "q3_k"],
              "tinyllama-1.1b": ["q4_0", "q4_k_m", "q4_k_m-edgert", "q3_k"]}
    for s in shapes:
        d = root / s
        for i, q in enumerate(dtypes[s]):
            if only_dtypes and q not in only_dtypes:
                continue
            c = Case(labels[s], s, q, d / f"{q}.gguf")
            if q == "q3_k":
                c.gguf = d / "q3_k_m.gguf"
                c.edgt_recipe = (d / "hf", "q3_k")
            if q == "q4_k_m-edgert":
                c.gguf = d / "q4_k_m.gguf"
                c.edgt_recipe = (d / "hf", "q4_k_m")
            if not c.gguf.exists():
                log(f"{labels[s]} {q}: {c.gguf} missing (llama_cpp not in the bench venv?): skipped")
                continue
            if i == 0:  # the peers' own quantizations of the same weights sit with the q4_0 row
                c.ct2 = d / "ct2-int8" if (d / "ct2-int8" / "model.bin").exists() else None
                c.ort = d / "ort-int4" if (d / "ort-int4" / "genai_config.json").exists() else None
            out.append(c)
    if with_real and REAL_SMOLLM2.exists() and (not only_dtypes or "q4_1" in only_dtypes):
        out.append(Case("SmolLM2-135M-Instruct (real)", "real", "q4_1", REAL_SMOLLM2))
    return out


def convert_to_edgt(case: Case, py: str, force: bool = False) -> None:
    """GGUF -> .edgt with edgert's converter, cached next to the GGUF (by mtime; --reconvert
    after a change of the converter or the format)."""
    src, recipe = case.edgt_recipe if case.edgt_recipe else (case.gguf, "keep")
    dst = (CACHE / "models" / "real" / REAL_SMOLLM2.with_suffix(".edgt").name if case.shape == "real"
           else case.gguf.with_suffix(".edgt") if recipe == "keep"
           else case.gguf.parent / f"edgert-{recipe}.edgt")
    dst.parent.mkdir(parents=True, exist_ok=True)
    src_mtime = (src / "model.safetensors").stat().st_mtime if src.is_dir() else src.stat().st_mtime
    if not force and dst.exists() and dst.stat().st_mtime >= src_mtime:
        case.edgt = dst
        return
    code = ("import sys, edgert.converters as c; c.convert(sys.argv[1], sys.argv[2], quantize=sys.argv[3])")
    logf = CACHE / f"edgert-convert-{dst.parent.name}-{dst.stem}.log"
    log(f"converting {src} ({recipe}) -> {dst} (log: {logf})")
    with open(logf, "w") as fh:
        rc = subprocess.run([py, "-c", code, str(src), str(dst), recipe], stdout=fh,
                            stderr=subprocess.STDOUT, cwd="/").returncode
        if rc != 0:
            rc = subprocess.run([py, "-m", "edgert", "convert", str(src), "-o", str(dst), "--quantize", recipe],
                                stdout=fh, stderr=subprocess.STDOUT, cwd="/").returncode
    if rc == 0 and dst.exists():
        case.edgt = dst
    else:
        case.notes.append(f"edgert: conversion failed, see {logf}")


# ---------------------------------------------------------------------------------------------
# Machine: bandwidth and roofline

def measure_bandwidth(threads: int, mib: int = 1024, runs: int = 9) -> dict[str, Any]:
    exe = CACHE / "membw"
    src = HERE / "membw.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    res: dict[str, Any] = {"buffer_mib": mib, "runs": runs}
    if cc and (not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime):
        subprocess.run([cc, "-O3", "-march=native", "-pthread", "-o", str(exe), str(src)],
                       check=True)
    if exe.exists():
        for t in sorted({1, threads, os.cpu_count() or 1}):
            out = subprocess.run([str(exe), str(mib), str(t), str(runs)], capture_output=True,
                                 text=True, check=True).stdout
            res[f"threads_{t}"] = json.loads(out)
        res["method"] = "membw.c (C, wide loads, per-thread slices)"
        res["gbps"] = res[f"threads_{threads}"]["median_gbps"]
        res["gbps_best"] = max(res[k]["median_gbps"] for k in res if k.startswith("threads_"))
    else:  # no compiler: numpy's single-threaded sum, a lower bound
        import numpy as np
        a = np.ones(mib * (1 << 20) // 8)
        a.sum()
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            a.sum()
            ts.append(time.perf_counter() - t0)
        res["method"] = "numpy sum (1 thread)"
        res["gbps"] = res["gbps_best"] = a.nbytes / statistics.median(ts) / 1e9
    return res


def gguf_bytes_per_token(path: Path) -> dict[str, Any]:
    """Bytes of weights one decode step reads: every tensor, except token_embd when the model has
    its own output.weight (then the embedding is only gathered, one row per token)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in r.tensors}
    total = sum(sizes.values())
    read = total - (sizes.get("token_embd.weight", 0) if "output.weight" in sizes else 0)

    def field(key: str) -> int:
        return int(r.fields[key].contents())

    n_layers, n_kv = field("llama.block_count"), field("llama.attention.head_count_kv")
    head_dim = field("llama.embedding_length") // field("llama.attention.head_count")
    return {"weights_bytes": total, "read_bytes_per_token": read,
            "kv_f16_bytes_per_token": 2 * n_layers * n_kv * head_dim * 2}


def edgt_bytes_per_token(path: Path, py: str) -> Optional[int]:
    """As gguf_bytes_per_token's read_bytes_per_token, for an .edgt file (edgert's own quantizer)."""
    code = ("import sys; from edgert.converters.edgt_file import read_edgt; "
            "f = read_edgt(sys.argv[1], verify_crc=False); t = f.tensors; "
            "print(sum(e.size for n, e in t.items() if not (n == 'token_embd.weight' and 'output.weight' in t)))")
    r = subprocess.run([py, "-c", code, str(path)], capture_output=True, text=True, cwd="/")
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else None


def dir_bytes(path: Path, names: tuple[str, ...]) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.name in names)


# ---------------------------------------------------------------------------------------------
# Running workers

@dataclass
class Job:
    engine: str
    model_path: Path
    label: str
    extra_args: list[str] = field(default_factory=list)
    python: str = ""
    key: str = ""


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs busy over `interval` seconds (/proc/stat), while this script sleeps:
    i.e. how much of the machine other processes are using."""
    def snap() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return f[3] + (f[4] if len(f) > 4 else 0), sum(f[:8])
    try:
        i0, t0 = snap()
        time.sleep(interval)
        i1, t1 = snap()
    except OSError:
        return 0.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


QUIET = {"threshold": 0.25, "max_wait_s": 120.0}
NICE = {"n": 0}


def wait_for_quiet() -> dict[str, float]:
    """Wait (up to QUIET max_wait_s) until other processes use < threshold of the CPUs, so a
    worker does not start while a build or test runs. Returns what it saw, for the record."""
    t0 = time.perf_counter()
    busy = cpu_busy()
    while busy > QUIET["threshold"] and time.perf_counter() - t0 < QUIET["max_wait_s"]:
        busy = cpu_busy(2.0)
    return {"cpu_busy_before": round(busy, 3), "waited_s": round(time.perf_counter() - t0, 1)}


def run_job(job: Job, common: list[str], timeout: int) -> dict[str, Any]:
    quiet = wait_for_quiet()
    cmd = ([] if not NICE["n"] else ["nice", "-n", str(NICE["n"])]) + [
           job.python, str(HERE / "engines.py"), job.engine, str(job.model_path),
           "--label", job.label, *common, *job.extra_args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s", "cmd": " ".join(cmd)}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr or p.stdout)[-2000:], "cmd": " ".join(cmd)}
    r = json.loads(lines[-1])
    r["cmd"] = " ".join(cmd)
    r["quiet"] = quiet
    r["quiet"]["cpu_busy_after"] = round(cpu_busy(0.5), 3)
    return r


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per metric: the median over every sample of every round."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[-1].get("error", "no result"), "cmd": rounds[-1].get("cmd")}
    base = dict(ok[0])
    libs = {r["extra"].get("native_lib") for r in ok if r.get("extra", {}).get("native_lib")}
    if len(libs) > 1:
        base["warning"] = ("the engine's native library changed between rounds (rebuilt during "
                           "the run): these medians mix builds; run again")
        log("WARNING " + base["warning"])
    samples: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r["samples"].items():
            samples.setdefault(k, []).extend(v)
    base.update({
        "samples": samples,
        "rounds": len(ok),
        "failed_rounds": len(rounds) - len(ok),
        "load_ms": statistics.median(r["load_ms"] for r in ok),
        "load_ms_samples": [r["load_ms"] for r in ok],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in ok),
        "rss_baseline_mb": statistics.median(r["rss_baseline_mb"] for r in ok),
        "cpu_busy_before": [r.get("quiet", {}).get("cpu_busy_before") for r in ok],
    })
    base.update(load_protocol().summarize_samples(samples, base["params"]["n_prompt"]))
    return base


def run_interleaved(jobs: list[Job], common: list[str], rounds: int, timeout: int,
                    what: str) -> dict[str, dict[str, Any]]:
    per: dict[str, list[dict[str, Any]]] = {j.key: [] for j in jobs}
    for r in range(rounds):
        if not jobs:
            break
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        for j in order:
            t0 = time.perf_counter()
            res = run_job(j, common, timeout)
            per[j.key].append(res)
            status = ("ERROR " + res["error"].strip().splitlines()[-1][:160]) if "error" in res else (
                ("" if what == "long" else f"decode {res.get('decode_tok_s') or 0:.1f} tok/s")
                + (f", TTFT {res['ttft_ms']:.0f} ms" if res.get("ttft_ms") else "")
                + (f", TTFT@long {res['long_ttft_ms']:.0f} ms" if res.get("long_ttft_ms") else "")
                + (f", decode@depth {res['depth_decode_tok_s']:.1f}" if res.get("depth_decode_tok_s") else ""))
            q = res.get("quiet", {})
            log(f"  {what} round {r + 1}/{rounds} {j.key:24s} {status} ({time.perf_counter() - t0:.0f}s"
                f"; others' CPU before {q.get('cpu_busy_before', 0) * 100:.0f}%"
                + (f", waited {q['waited_s']:.0f}s" if q.get("waited_s", 0) > 1.5 else "") + ")")
            if "error" in res and r == 0:  # it would fail again: spend no more rounds on it
                jobs = [x for x in jobs if x.key != j.key]
    return {k: merge_rounds(v) for k, v in per.items() if v}


# ---------------------------------------------------------------------------------------------
# Output

ENGINE_DTYPE = {"ct2": "int8 (CT2)", "ort": "int4 (ORT MatMulNBits)"}


def build_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in results["cases"]:
        llama = case["engines"].get("llama.cpp", {})
        # CT2/ORT rows compare with llama.cpp on the Q4_0 GGUF of the same weights: that is this case.
        for eng, r in case["engines"].items():
            row = {"engine": eng, "model": case["label"],
                   "dtype": ENGINE_DTYPE.get(eng, case["dtype"].upper()),
                   "error": r.get("error")}
            for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "peak_rss_mb", "load_ms",
                      "long_ttft_ms", "prefill_tok_cpu_s", "decode_tok_cpu_s"):
                row[k] = r.get(k)
            if llama and "error" not in llama and "error" not in r:
                row["prefill_cpu_vs_llama"] = _ratio(r.get("prefill_tok_cpu_s"), llama.get("prefill_tok_cpu_s"))
                row["decode_cpu_vs_llama"] = _ratio(r.get("decode_tok_cpu_s"), llama.get("decode_tok_cpu_s"))
                row["prefill_vs_llama"] = _ratio(r.get("prefill_tok_s"), llama.get("prefill_tok_s"))
                row["decode_vs_llama"] = _ratio(r.get("decode_tok_s"), llama.get("decode_tok_s"))
                row["long_ttft_vs_llama"] = _ratio(r.get("long_ttft_ms"), llama.get("long_ttft_ms"))
            roof = case["roofline_tok_s"].get(eng)
            row["roofline_tok_s"] = roof
            row["pct_roofline"] = (100 * r["decode_tok_s"] / roof
                                   if roof and r.get("decode_tok_s") else None)
            rows.append(row)
    return rows


def paired_ratio(r: dict[str, Any]) -> Optional[float]:
    """Median over rounds of (decode @depth / decode @0), both measured in the same worker one
    after the other: the machine's speed drifts between rounds by more than the effect measured,
    and a ratio taken inside one round cancels that drift."""
    s = r.get("samples", {})
    d0, dd = s.get("decode_tok_s") or [], s.get("depth_decode_tok_s") or []
    if not d0 or len(d0) != len(dd):
        return None
    return statistics.median(b / a for a, b in zip(d0, dd) if a > 0)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def _f(v: Optional[float], fmt: str = "{:.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def write_markdown(results: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> str:
    m = results["machine"]
    bw = results["bandwidth"]
    p = results["params"]
    lines = [
        f"# edgert benchmark — {results['date']} on {m['host']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, {p['threads']} thread(s) for every engine; "
        f"read bandwidth {bw['gbps']:.1f} GB/s at {p['threads']} threads, {bw['gbps_best']:.1f} GB/s "
        f"best (used for the roofline; {bw['method']}). "
        f"Medians of {p['rounds']} rounds × {p['repeats']} run(s); prompt {p['n_prompt']} tokens, "
        f"decode {p['n_gen']} tokens. Command: `{results['command']}`",
        "",
        "| engine | model | dtype | prefill tok/s | decode tok/s | TTFT ms | peak RSS MB | load ms "
        "| prefill × llama.cpp | decode × llama.cpp | % of roofline |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["error"]:
            err = r["error"].strip().splitlines()[-1][:80] if r["error"].strip() else "failed"
            lines.append(f"| {r['engine']} | {r['model']} | {r['dtype']} | failed: {err} "
                         "| | | | | | | |")
            continue
        lines.append(
            f"| {r['engine']} | {r['model']} | {r['dtype']} | {_f(r['prefill_tok_s'])} "
            f"| {_f(r['decode_tok_s'])} | {_f(r['ttft_ms'], '{:.0f}')} | {_f(r['peak_rss_mb'], '{:.0f}')} "
            f"| {_f(r['load_ms'], '{:.0f}')} | {_f(r.get('prefill_vs_llama'), '{:.2f}×')} "
            f"| {_f(r.get('decode_vs_llama'), '{:.2f}×')} | {_f(r['pct_roofline'], '{:.0f}%')} |")
    cpu_rows = [r for r in rows if r.get("decode_tok_cpu_s") and r["engine"] in ("edgert", "llama.cpp")]
    if cpu_rows:
        lines += ["", "## Per process-CPU second (every thread's CPU time; at 1 thread the work done, "
                  "which a busy machine inflates far less than the wall clock)", "",
                  "| engine | model | dtype | prefill tok/CPU-s | decode tok/CPU-s | prefill × llama.cpp "
                  "| decode × llama.cpp |", "|---|---|---|---:|---:|---:|---:|"]
        for r in cpu_rows:
            lines.append(f"| {r['engine']} | {r['model']} | {r['dtype']} | {_f(r.get('prefill_tok_cpu_s'))} "
                         f"| {_f(r.get('decode_tok_cpu_s'))} | {_f(r.get('prefill_cpu_vs_llama'), '{:.2f}×')} "
                         f"| {_f(r.get('decode_cpu_vs_llama'), '{:.2f}×')} |")
    long_rows = [r for r in rows if r.get("long_ttft_ms")]
    if long_rows:
        lines += ["", f"## Time to first token, {p['long_prompt']}-token prompt (issue 5)", "",
                  "| engine | model | dtype | TTFT ms | × llama.cpp (lower is better) |",
                  "|---|---|---|---:|---:|"]
        for r in long_rows:
            lines.append(f"| {r['engine']} | {r['model']} | {r['dtype']} | {r['long_ttft_ms']:.0f} "
                         f"| {_f(r.get('long_ttft_vs_llama'), '{:.2f}×')} |")
    if results.get("kv_depth"):
        kd = results["kv_depth"]
        lines += ["", f"## Decode after {kd['depth']} tokens of context (issue 4), {kd['model']}", "",
                  "| engine | KV cache | decode tok/s @0 | decode tok/s @depth | depth / 0 "
                  "| depth / 0, paired | prefill of the context, ms | peak RSS MB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for key, r in kd["engines"].items():
            if "error" in r:
                lines.append(f"| {key} | | failed: {r['error'].strip().splitlines()[-1][:80]} | | | | |")
                continue
            d0, dd = r.get("decode_tok_s"), r.get("depth_decode_tok_s")
            lines.append(f"| {r['engine']} | {r['extra'].get('kv_type')} | {_f(d0)} | {_f(dd)} "
                         f"| {_f(_ratio(dd, d0), '{:.2f}')} | {_f(paired_ratio(r), '{:.2f}')} "
                         f"| {_f(r.get('depth_ttft_ms'), '{:.0f}')} | {_f(r.get('peak_rss_mb'), '{:.0f}')} |")
    notes = [n for c in results["cases"] for n in c.get("notes", [])] + results.get("notes", [])
    notes += [f"{e} on {c['label']} {c['dtype']}: {r['warning']}" for c in results["cases"]
              for e, r in c["engines"].items() if r.get("warning")]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    lines += ["", "Prefill tok/s = prompt tokens / TTFT. Decode starts from a one-token context "
              "(as llama-bench tg). Roofline = bandwidth / bytes of weights read per decoded token "
              "(+ the f16 KV cache read at that depth). See benchmarks/README.md.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def write_plot(results: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r["error"]]
    models = list(dict.fromkeys(f"{r['model']}\n{r['dtype'] if r['engine'] in ('edgert', 'llama.cpp') else ''}"
                                .strip() for r in ok if r["engine"] in ("edgert", "llama.cpp")))
    engines = ["edgert", "llama.cpp", "ct2", "ort"]
    colors = {"edgert": "#d62728", "llama.cpp": "#1f77b4", "ct2": "#2ca02c", "ort": "#9467bd"}
    pp = results["params"]
    panels = [("prefill_tok_s", f"prefill tok/s ({pp['n_prompt']}-token prompt) — higher is better"),
              ("decode_tok_s", f"decode tok/s ({pp['n_gen']} tokens) — higher is better")]
    if any(r.get("long_ttft_ms") for r in ok):
        panels.append(("long_ttft_ms", f"TTFT ms, {results['params']['long_prompt']}-token prompt "
                                       "— lower is better"))
    panels.append(("peak_rss_mb", "peak RSS MB — lower is better"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.6 * len(panels)))
    width = 0.8 / len(engines)

    def group_of(r: dict[str, Any]) -> str:
        if r["engine"] in ("edgert", "llama.cpp"):
            return f"{r['model']}\n{r['dtype']}"
        # peers sit in the Q4_0 group of their shape
        return f"{r['model']}\nQ4_0"

    for ax, (key, title) in zip(axes, panels):
        for ei, eng in enumerate(engines):
            xs, ys = [], []
            for gi, g in enumerate(models):
                for r in ok:
                    if r["engine"] == eng and group_of(r) == g and r.get(key):
                        xs.append(gi + (ei - (len(engines) - 1) / 2) * width)
                        ys.append(r[key])
            if xs:
                bars = ax.bar(xs, ys, width, label=eng if eng not in ENGINE_DTYPE else
                              f"{eng} {ENGINE_DTYPE[eng]}", color=colors[eng])
                ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        if key == "decode_tok_s":  # the roofline of each GGUF group, a dashed segment
            for gi, g in enumerate(models):
                roofs = [r["roofline_tok_s"] for r in ok if group_of(r) == g
                         and r["engine"] == "llama.cpp" and r.get("roofline_tok_s")]
                if roofs:
                    ax.hlines(roofs[0], gi - 0.45, gi + 0.45, colors="k", linestyles="--",
                              label="roofline" if gi == 0 else None)
        if key != "peak_rss_mb":  # speeds of a 135M and a 1.1B model differ ~10x
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right", ncol=5)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (2.5 if key != "peak_rss_mb" else 1.12))  # room for labels, legend
    m = results["machine"]
    fig.suptitle(f"edgert vs peers — {m['cpu']}, {results['params']['threads']} thread(s), "
                 f"{results['date']} (medians of {results['params']['rounds']} rounds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split()
                         if f.startswith(("avx", "amx", "fma", "f16c"))]
    except OSError:
        pass
    load = os.getloadavg()
    return {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(), "simd_flags": flags,
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": load, "threads": threads}


# ---------------------------------------------------------------------------------------------

def reexec_in_bench_venv() -> None:
    """The orchestrator needs gguf and matplotlib: run it with the bench venv's interpreter."""
    try:
        import gguf  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError:
        py = bench_python()
        if py != sys.executable and os.environ.get("EDGERT_BENCH_REEXEC") != "1":
            os.environ["EDGERT_BENCH_REEXEC"] = "1"
            os.execv(py, [py, __file__, *sys.argv[1:]])
        raise SystemExit("run_bench.py needs gguf and matplotlib: run benchmarks/setup_peers.sh")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        reexec_in_bench_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="worker processes per engine and model")
    ap.add_argument("--repeats", type=int, default=1, help="measured runs inside each worker")
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--long-prompt", type=int, default=2048,
                    help="TTFT of a prompt this long, edgert/llama.cpp/CT2 (0: skip)")
    ap.add_argument("--long-dtypes", nargs="+", default=["q4_0"],
                    help="GGUF types whose models get the long-prompt TTFT (issue 5 compares Q4_0)")
    ap.add_argument("--shapes", nargs="+", default=["smollm2-135m", "tinyllama-1.1b"])
    ap.add_argument("--no-real", action="store_true", help="skip the real SmolLM2 Q4_1 GGUF")
    ap.add_argument("--dtypes", nargs="+", metavar="D", help="only these rows (q4_0 q8_0 q4_k_m "
                    "q4_k_m-edgert q3_k; q4_1 = the real SmolLM2), e.g. for an A/B of the new types")
    ap.add_argument("--engines", nargs="+", default=["edgert", "llama.cpp", "ct2", "ort"])
    ap.add_argument("--edgert-python", help="interpreter whose edgert to measure (default: the "
                    "first of the bench venv, /work/venv, this one that imports edgert._edgert)")
    ap.add_argument("--llama-flash-attn", default="on", choices=["on", "off"])
    ap.add_argument("--kv-depth", type=int, default=0, metavar="N",
                    help="also run issue 4's KV benchmark: decode after N tokens (e.g. 4096)")
    ap.add_argument("--kv-only", action="store_true", help="run only the KV benchmark")
    ap.add_argument("--kv-model", default="tinyllama-1.1b", help="shape for the KV benchmark")
    ap.add_argument("--kv-rounds", type=int, default=0, help="rounds for the KV benchmark "
                    "(0: --rounds)")
    ap.add_argument("--edgert-kv-types", nargs="+", default=["f16", "q8"])
    ap.add_argument("--llama-kv-types", nargs="+", default=["f16", "q8_0"])
    ap.add_argument("--quick", action="store_true",
                    help="3 rounds, SmolLM2 shape only, no long prompt: a smoke run")
    ap.add_argument("--reconvert", action="store_true", help="convert the GGUFs to .edgt again")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per worker")
    ap.add_argument("--quiet-threshold", type=float, default=0.25, help="before each worker, wait "
                    "until other processes use less than this fraction of the CPUs ...")
    ap.add_argument("--quiet-max-wait", type=float, default=120.0, help="... for at most this long")
    ap.add_argument("--nice", type=int, default=0, help="run workers under `nice -n N`; a negative "
                    "N (root) keeps other jobs from preempting them on a shared machine")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only rewrite latest.md/latest.png from a results JSON")
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        rows = build_rows(results)
        print(write_markdown(results, rows, args.out / "latest.md"))
        write_plot(results, rows, args.out / "latest.png")
        return 0
    if args.quick:
        args.rounds, args.shapes, args.long_prompt, args.no_real = 3, ["smollm2-135m"], 0, True

    QUIET.update(threshold=args.quiet_threshold, max_wait_s=args.quiet_max_wait)
    NICE["n"] = args.nice
    args.out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now()
    results: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/run_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(args.threads),
        "params": {"threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
                   "n_prompt": args.n_prompt, "n_gen": args.n_gen, "long_prompt": args.long_prompt,
                   "llama_flash_attn": args.llama_flash_attn, "llama_n_batch": 512,
                   "nice": args.nice, "quiet_threshold": args.quiet_threshold,
                   "llama_n_ubatch": 512},
        "cases": [], "notes": [],
    }
    if os.getloadavg()[0] > 0.7 * (os.cpu_count() or 1):
        msg = (f"load average {os.getloadavg()[0]:.2f} at start on {os.cpu_count()} cores: "
               "something else is running, figures may be noisy")
        log("WARNING " + msg)
        results["notes"].append(msg)

    shapes_needed = sorted(set(args.shapes) | ({args.kv_model} if args.kv_depth else set()))
    make_models(shapes_needed)

    epy = edgert_python(args.edgert_python) if "edgert" in args.engines else None
    if "edgert" in args.engines and not epy:
        msg = ("edgert: not measured — no interpreter imports edgert._edgert (build it: "
               "`pip install /work/main` into the bench venv, or pass --edgert-python)")
        log(msg)
        results["notes"].append(msg)
    bpy = bench_python()
    results["versions"] = json.loads(subprocess.run(
        [bpy, "-c", "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) "
         "for p in ['llama_cpp_python', 'ctranslate2', 'onnxruntime-genai', 'onnxruntime', "
         "'gguf']}))"], capture_output=True, text=True, cwd="/").stdout or "{}")
    if epy:
        results["versions"]["edgert"] = subprocess.run(
            [epy, "-c", "import edgert, edgert._edgert as e; print(edgert.__version__, e.isa(), "
             "e.__file__)"], capture_output=True, text=True, cwd="/").stdout.strip()
        results["versions"]["edgert_python"] = epy
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    results["versions"]["edgert_git"] = git

    log(f"measuring read bandwidth ({args.threads} threads)")
    quiet = wait_for_quiet()
    results["bandwidth"] = bw = measure_bandwidth(args.threads)
    bw["quiet"] = quiet
    log(f"  {bw['gbps']:.1f} GB/s at {args.threads} threads; best over 1..{os.cpu_count()} threads "
        f"{bw['gbps_best']:.1f} GB/s (the roofline's)")

    common = ["--threads", str(args.threads), "--repeats", str(args.repeats),
              "--n-prompt", str(args.n_prompt), "--n-gen", str(args.n_gen)]
    cases = [] if args.kv_only else cases_for(args.shapes, not args.no_real, args.dtypes)
    for case in cases:
        if epy:
            convert_to_edgt(case, epy, args.reconvert)
        bpt = gguf_bytes_per_token(case.gguf)
        kv_read = bpt["kv_f16_bytes_per_token"] * (args.n_gen / 2)  # mean context while decoding
        # bytes one decode step reads, per engine; the roofline divides the bandwidth by it
        per_tok = {e: bpt["read_bytes_per_token"] + kv_read for e in ("edgert", "llama.cpp")}
        if case.edgt_recipe and case.edgt and epy:
            own = edgt_bytes_per_token(case.edgt, epy)
            if own:
                per_tok["edgert"] = own + kv_read
                bpt["edgert_read_bytes_per_token"] = own
        jobs: list[Job] = []
        if "edgert" in args.engines and epy and case.edgt:
            jobs.append(Job("edgert", case.edgt, case.label, python=epy, key="edgert"))
        if "llama.cpp" in args.engines:
            jobs.append(Job("llama.cpp", case.gguf, case.label, ["--flash-attn", args.llama_flash_attn],
                            python=bpy, key="llama.cpp"))
        if "ct2" in args.engines and case.ct2:
            jobs.append(Job("ct2", case.ct2, case.label, python=bpy, key="ct2"))
            per_tok["ct2"] = dir_bytes(case.ct2, ("model.bin",)) + kv_read
        if "ort" in args.engines and case.ort:
            jobs.append(Job("ort", case.ort, case.label, python=bpy, key="ort"))
            per_tok["ort"] = dir_bytes(case.ort, ("model.onnx", "model.onnx.data")) + kv_read
        log(f"{case.label} {case.dtype}: {', '.join(j.key for j in jobs)}")
        engines = run_interleaved(jobs, common, args.rounds, args.timeout, "main")
        if args.long_prompt and case.dtype in args.long_dtypes:
            long_jobs = [j for j in jobs if j.engine in ("edgert", "llama.cpp", "ct2")]
            long_common = ["--threads", str(args.threads), "--repeats", str(args.repeats),
                           "--n-prompt", "0", "--n-gen", "1", "--long-prompt", str(args.long_prompt)]
            long = run_interleaved(long_jobs, long_common, args.rounds, args.timeout, "long")
            for k, r in long.items():
                if k in engines and "error" not in r and "error" not in engines[k]:
                    engines[k]["long_ttft_ms"] = r.get("long_ttft_ms")
                    engines[k]["long_ttft_samples_s"] = r["samples"].get("long_ttft_s")
                    engines[k]["long_peak_rss_mb"] = r.get("peak_rss_mb")
        results["cases"].append({
            "label": case.label, "shape": case.shape, "dtype": case.dtype,
            "gguf": str(case.gguf), "edgt": str(case.edgt) if case.edgt else None,
            "bytes": bpt, "bytes_per_decoded_token": per_tok, "engines": engines,
            "notes": case.notes})

    if args.kv_depth:
        results["kv_depth"] = run_kv_depth(args, epy, bpy)

    # Bandwidth again at the end: on a shared machine one probe can land in someone's build. The
    # roofline uses the best of both (a ceiling should not sink because a neighbour was busy).
    quiet = wait_for_quiet()
    end = measure_bandwidth(args.threads)
    bw["at_end"] = {"gbps": end["gbps"], "gbps_best": end["gbps_best"], "quiet": quiet}
    bw["gbps_best"] = max(bw["gbps_best"], end["gbps_best"])
    log(f"bandwidth at the end {end['gbps_best']:.1f} GB/s; roofline uses {bw['gbps_best']:.1f}")
    for c in results["cases"]:
        c["roofline_tok_s"] = {e: bw["gbps_best"] * 1e9 / b
                               for e, b in c["bytes_per_decoded_token"].items()}

    stamp = now.strftime("%Y-%m-%d-%H%M")
    host = results["machine"]["host"]
    rows = build_rows(results)
    results["table"] = rows
    json_path = args.out / f"{stamp}-{host}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md = write_markdown(results, rows, args.out / "latest.md")
    (args.out / f"{stamp}-{host}.md").write_text(md)
    if rows:
        write_plot(results, rows, args.out / "latest.png")
        shutil.copy(args.out / "latest.png", args.out / f"{stamp}-{host}.png")
    print(md)
    log(f"wrote {json_path}, {args.out / 'latest.md'}, {args.out / 'latest.png'}")
    return 0


def run_kv_depth(args: argparse.Namespace, epy: Optional[str], bpy: str) -> dict[str, Any]:
    """Issue 4: decode tok/s at context 0 and after --kv-depth tokens, per KV-cache type."""
    d = CACHE / "models" / args.kv_model
    gguf_path = d / "q4_0.gguf"
    case = Case(args.kv_model, args.kv_model, "q4_0", gguf_path)
    jobs: list[Job] = []
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats), "--n-prompt", "0",
              "--n-gen", str(args.n_gen), "--depth", str(args.kv_depth)]
    if "edgert" in args.engines and epy:
        convert_to_edgt(case, epy, args.reconvert)
        if case.edgt:
            for kv in args.edgert_kv_types:
                jobs.append(Job("edgert", case.edgt, case.label, ["--kv-type", kv], epy,
                                key=f"edgert kv={kv}"))
    if "llama.cpp" in args.engines:
        for kv in args.llama_kv_types:
            # a quantized V cache needs flash attention in llama.cpp; use it for every type alike
            jobs.append(Job("llama.cpp", gguf_path, case.label,
                            ["--kv-type", kv, "--flash-attn", "on"], bpy, key=f"llama.cpp kv={kv}"))
    log(f"KV depth {args.kv_depth} on {args.kv_model}: {', '.join(j.key for j in jobs)}")
    rounds = args.kv_rounds or args.rounds
    engines = run_interleaved(jobs, common, rounds, args.timeout, "kv")
    return {"model": f"{args.kv_model} Q4_0", "depth": args.kv_depth, "rounds": rounds,
            "engines": engines, "notes": case.notes}


if __name__ == "__main__":
    sys.exit(main())
