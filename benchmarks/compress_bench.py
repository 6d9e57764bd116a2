"""Issue 10's compression benchmark on SmolLM2-135M: calibrated quantization against
round-to-nearest, and pruning healed by distillation, against the f32 teacher (SmolLM2's Q4_1
GGUF dequantized: its values sit on a Q4_1 grid, so re-quantizing into q4_0 is not free).

    python benchmarks/compress_bench.py --work /work/cbench                  # everything
    python benchmarks/compress_bench.py --work /work/cbench --only quality   # files exist: measure
    python benchmarks/compress_bench.py --work /work/cbench --only speed     # decode tok/s (quiet machine!)

Stages (each skipped when its file exists):
  teacher-f32   edgert convert GGUF --quantize f32
  rtn-q4_0      edgert convert GGUF --quantize q4_0 (embedding q8_0)
  gptq-q4_0     edgert compress GGUF --allow-quantized-source --quant q4_0:gptq --calib self:128
                --save-calib calib.npz (later runs: --calib calib.npz, the same sequences); GPTQ's
                defaults act_order=1, asym=1 (benchmarks/compress_sweep.py measured the options)
  awqgptq-q4_0  ... --quant q4_0:awq+gptq
  rtn-q3_k      edgert convert GGUF --quantize q3_k (q3_0 where rows are not whole 256-blocks)
  gptq-q3_k, awqgptq-q3_k   ... --quant q3_k:gptq / q3_k:awq+gptq
  student-q4_0  ... --prune ffn=0.25,refit=1 --distill lr=2e-4,batch=4 --time-budget 60m
                    (--distill-minutes) --quant q4_0:gptq --calib self:128 --save-stages stages/
                    (pruned.edgt, refit.edgt, healed.edgt: f32); ~5 GB resident while distilling
Compress runs record wall time and peak RSS (/usr/bin/time -v); the target is <= 2x the f32
model (540 MB) without distillation.

Quality (load-independent): wikitext-2 test (never calibration text), chunks of --ctx 512, the
second half of each chunk scored as edgert perplexity does; PPL and mean KLD(teacher ‖ model) over
the whole vocabulary, every model run in lockstep with the teacher in the runtime's default mode
(int8 activations on block weights), f16 KV cache. Speed: decode tok/s (edgert.bench protocol,
n_gen 64), models interleaved per round, medians; /proc/loadavg is recorded with each figure.
Results: benchmarks/results/compress-<date>.json and .md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GGUF = SHARED / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
WIKI = SHARED / "data" / "text" / "wikitext-2-raw-test.txt"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def run_tool(args: list[str], log: Path) -> dict:
    """Run an edgert command in a child under /usr/bin/time -v: wall time and its peak RSS (a fresh
    `time` process in between, so the figure is not this orchestrator's carried-over ru_maxrss)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        # Not from the checkout: `python -m` would import its edgert/ (no native module).
        r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "edgert", *args], stdout=f,
                           stderr=subprocess.STDOUT, cwd=log.parent)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed; see {log}")
    peak = None
    for line in log.read_text().splitlines():
        if "Maximum resident set size" in line:
            peak = round(int(line.split(":")[1]) / 1024, 1)
    return {"seconds": round(wall, 1), "peak_rss_mb": peak, "loadavg_end": loadavg()}


def make_files(work: Path, minutes: float, threads: int, calib: str, student_calib: str,
               only: list[str] | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    runs = {}
    g = str(GGUF)
    jobs = [
        ("teacher-f32", ["convert", g, "-o", str(work / "teacher-f32.edgt"), "--quantize", "f32", "--no-progress"]),
        ("rtn-q4_0", ["convert", g, "-o", str(work / "rtn-q4_0.edgt"), "--quantize", "q4_0", "--no-progress"]),
        ("rtn-q3_k", ["convert", g, "-o", str(work / "rtn-q3_k.edgt"), "--quantize", "q3_k", "--no-progress"]),
    ]
    # The first compress run samples the calibration set and keeps it; the others reuse it.
    saved = work / "calib.npz"
    common = ["--allow-quantized-source", "--threads", str(threads), "--no-progress"]
    for name, quant in (("gptq-q4_0", "q4_0:gptq"), ("awqgptq-q4_0", "q4_0:awq+gptq"), ("gptq-q3_k", "q3_k:gptq"),
                        ("awqgptq-q3_k", "q3_k:awq+gptq")):
        jobs.append((name, ["compress", g, "-o", str(work / f"{name}.edgt"), "--quant", quant, *common]))
    # Distillation trains on more text than quantization needs: its own, larger sample.
    jobs.append(("student-q4_0", ["compress", g, "-o", str(work / "student-q4_0.edgt"), "--prune", "ffn=0.25,refit=1",
                                  "--distill", "lr=2e-4,batch=4", "--time-budget", f"{minutes}m",
                                  "--quant", "q4_0:gptq", "--save-stages", str(work / "stages"),
                                  "--calib", student_calib, "--save-calib", str(work / "calib-student.npz"), *common]))
    for name, args in jobs:
        if (work / f"{name}.edgt").exists() or (only is not None and name not in only):
            continue
        if args[0] == "compress" and "--calib" not in args:
            args = args + (["--calib", str(saved)] if saved.exists() else ["--calib", calib, "--save-calib", str(saved)])
        print(f"[{time.strftime('%H:%M:%S')}] {name} (loadavg {loadavg()})", flush=True)
        runs[name] = run_tool(args, work / f"{name}.log")
        print(f"    {runs[name]}", flush=True)
    return runs


def _logp(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def quality(work: Path, names: list[str], n_ctx: int, max_tokens: int, threads: int, text: Path = WIKI,
            exact: bool = False) -> dict:
    from edgert.model import ContextParams, Model
    from edgert.tokenizer import Tokenizer
    teacher = Model(work / "teacher-f32.edgt")
    tokens = np.asarray(Tokenizer.from_metadata(teacher.metadata).encode(text.read_text(encoding="utf-8")), np.int32)
    n_chunks = min(len(tokens), max_tokens or len(tokens)) // n_ctx
    params = ContextParams(n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, kv_type_k="f16", kv_type_v="f16")
    models = {n: Model(work / f"{n}.edgt", exact=exact) for n in names}
    ctxs = {n: m.new_context(params) for n, m in models.items()}
    tctx = teacher.new_context(params)
    first = n_ctx // 2
    acc = {n: {"nll": 0.0, "kl": 0.0, "chunks_nll": [], "chunks_kl": []} for n in ["teacher-f32", *names]}
    count = 0
    t0 = time.monotonic()
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        tgt = chunk[first + 1:].astype(np.int64)
        tctx.reset()
        ref = _logp(tctx.eval(chunk, all_logits=True)[first:n_ctx - 1])
        t_nll = -float(np.take_along_axis(ref, tgt[:, None], -1).sum())
        acc["teacher-f32"]["nll"] += t_nll
        acc["teacher-f32"]["chunks_nll"].append(t_nll)
        for n, ctx in ctxs.items():
            ctx.reset()
            lp = _logp(ctx.eval(chunk, all_logits=True)[first:n_ctx - 1])
            c_nll = -float(np.take_along_axis(lp, tgt[:, None], -1).sum())
            c_kl = float((np.exp(ref) * (ref - lp)).sum())
            acc[n]["nll"] += c_nll
            acc[n]["kl"] += c_kl
            acc[n]["chunks_nll"].append(c_nll)
            acc[n]["chunks_kl"].append(c_kl)
        count += len(tgt)
        print(f"\r  chunk {c + 1}/{n_chunks}  {time.monotonic() - t0:.0f}s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    out = {}
    for n, a in acc.items():
        path = work / f"{n}.edgt"
        out[n] = {"ppl": math.exp(a["nll"] / count), "kld": None if n == "teacher-f32" else a["kl"] / count,
                  "file_bytes": path.stat().st_size, "chunks_nll": a["chunks_nll"],
                  **({} if n == "teacher-f32" else {"chunks_kl": a["chunks_kl"]})}
    for c in [*ctxs.values(), tctx]:
        c.close()
    return {"n_scored": count, "n_ctx": n_ctx, "exact": exact, "models": out}


def cut_interval(q: dict, name: str, per_chunk: float, base: str = "rtn-q4_0", n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """PPL-gap and KLD cuts of `name` against `base`, with 95% intervals from resampling whole
    chunks (paired: the same chunks for the teacher, the base and the model)."""
    t, b, m = (np.asarray(q[k]["chunks_nll"]) for k in ("teacher-f32", base, name))
    bk, mk = np.asarray(q[base]["chunks_kl"]), np.asarray(q[name]["chunks_kl"])
    rng = np.random.default_rng(seed)

    def cuts(idx):
        pt, pb, pm = (math.exp(x[idx].sum() / (len(idx) * per_chunk)) for x in (t, b, m))
        return 1 - (pm - pt) / (pb - pt), 1 - mk[idx].sum() / bk[idx].sum()

    full = cuts(np.arange(len(t)))
    boots = np.array([cuts(rng.integers(0, len(t), len(t))) for _ in range(n_boot)])
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    return {"gap_cut": full[0], "gap_cut_95": [lo[0], hi[0]], "kld_cut": full[1], "kld_cut_95": [lo[1], hi[1]]}


def speed(work: Path, names: list[str], rounds: int, threads: int) -> dict:
    from edgert.bench import bench_edgert
    samples = {n: [] for n in names}
    loads = []
    for r in range(rounds):
        for n in names:
            loads.append(float(loadavg()))
            res = bench_edgert(str(work / f"{n}.edgt"), n_prompt=0, n_gen=64, n_threads=threads, repeats=1,
                               warmup=(r == 0))
            samples[n].append(res["decode_tok_s"])
    return {"decode_tok_s": {n: statistics.median(v) for n, v in samples.items()}, "samples": samples,
            "loadavg": {"min": min(loads), "max": max(loads)}, "threads": threads}


def report(res: dict) -> str:
    q = res.get("quality", {}).get("models", {})
    sp = res.get("speed", {}).get("decode_tok_s", {})
    t = q.get("teacher-f32", {}).get("ppl")
    lines = [f"# Compression benchmark, SmolLM2-135M ({res['date']})", "",
             f"wikitext-2 test, ctx {res.get('quality', {}).get('n_ctx')}, {res.get('quality', {}).get('n_scored')} "
             f"tokens scored{' (exact: f32 activations)' if res.get('quality', {}).get('exact') else ''}; "
             "KLD(teacher ‖ model) exact over the vocabulary; teacher = the Q4_1 GGUF dequantized to f32.", "",
             "| model | PPL | PPL gap to teacher | mean KLD | file MiB | decode tok/s |", "|---|---|---|---|---|---|"]
    for n, m in q.items():
        gap = "" if t is None or n == "teacher-f32" else f"{m['ppl'] - t:+.3f}"
        kld = "-" if m["kld"] is None else f"{m['kld']:.4f}"
        s = f"{sp[n]:.1f}" if n in sp else ""
        lines.append(f"| {n} | {m['ppl']:.3f} | {gap} | {kld} | {m['file_bytes'] / 2**20:.1f} | {s} |")
    if "rtn-q4_0" in q and t is not None:
        rtn = q["rtn-q4_0"]
        for n in ("gptq-q4_0", "awqgptq-q4_0"):
            if n in q:
                cut_gap = 1 - (q[n]["ppl"] - t) / (rtn["ppl"] - t)
                cut_kld = 1 - q[n]["kld"] / rtn["kld"]
                ci = ""
                if "chunks_nll" in q[n] and len(q[n]["chunks_nll"]) > 1:
                    c = cut_interval(q, n, res["quality"]["n_scored"] / len(q[n]["chunks_nll"]))
                    ci = (f" [95% interval over chunks: gap cut {100 * c['gap_cut_95'][0]:.0f}–"
                          f"{100 * c['gap_cut_95'][1]:.0f}%, KLD cut {100 * c['kld_cut_95'][0]:.0f}–"
                          f"{100 * c['kld_cut_95'][1]:.0f}%]")
                lines.append(f"\n{n} vs rtn-q4_0: PPL gap cut {100 * cut_gap:.0f}% (target >= 50%), "
                             f"mean KLD cut {100 * cut_kld:.0f}% (target >= 40%){ci}")
    for n in ("gptq-q3_k", "awqgptq-q3_k"):
        if n in q and "rtn-q4_0" in q:
            lines.append(f"\n{n}: PPL {q[n]['ppl']:.3f} vs rtn-q4_0 {q['rtn-q4_0']['ppl']:.3f} (target: no worse)"
                         + (f"; decode {sp[n] / sp['rtn-q4_0']:.2f}x rtn-q4_0 (target >= 1.2x)"
                            if n in sp and "rtn-q4_0" in sp else ""))
    if all(k in q for k in ("stages/pruned", "stages/healed")) and t is not None:
        p, h = q["stages/pruned"]["ppl"], q["stages/healed"]["ppl"]
        if "stages/refit" in q:
            r = q["stages/refit"]["ppl"]
            lines.append(f"\npruned student, least-squares refit alone: recovers {100 * (p - r) / (p - t):.0f}% of the PPL gap")
        lines.append(f"\npruned student + refit + distillation: recovers {100 * (p - h) / (p - t):.0f}% of the PPL gap "
                     "(target >= 60%)")
    for n, r in res.get("runs", {}).items():
        lines.append(f"\n{n}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB (loadavg at end {r['loadavg_end']})")
    if sp:
        lines.append(f"\nspeed: {res['speed']['threads']} threads, loadavg {res['speed']['loadavg']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/cbench"))
    ap.add_argument("--only", choices=["files", "quality", "speed"], default=None)
    ap.add_argument("--distill-minutes", type=float, default=60.0)
    ap.add_argument("--calib", default="self:128", help="calibration of the first compress run (kept in calib.npz)")
    ap.add_argument("--student-calib", default="self:128", help="calibration (and training text) of the student run")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=32768,
                    help="wikitext tokens used, from the start (0: all ~300k; 32768 = 64 chunks of 512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--text", type=Path, default=WIKI, help="evaluation text (default wikitext-2 test)")
    ap.add_argument("--models", default=None, help="comma-separated subset of the models to measure")
    ap.add_argument("--exact", action="store_true",
                    help="quantized models take f32 activations (no int8 rounding): the weights' error alone")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if a.only in (None, "files"):
        res["runs"] = make_files(a.work, a.distill_minutes, a.threads, a.calib, a.student_calib,
                                 a.models.split(",") if a.models else None)
    # --models picks from the standard files and may name any other WORK/<name>.edgt (a recipe
    # tried by hand, e.g. a --target-bpw mixture with --tune), measured the same way.
    standard = ("rtn-q4_0", "gptq-q4_0", "awqgptq-q4_0", "rtn-q3_k", "gptq-q3_k", "awqgptq-q3_k",
                "stages/pruned", "stages/refit", "stages/healed", "student-q4_0")
    names = [n for n in (standard if a.models is None else a.models.split(","))
             if n != "teacher-f32" and (a.work / f"{n}.edgt").exists()]
    if a.only in (None, "quality"):
        res["quality"] = quality(a.work, names, a.ctx, a.max_tokens, a.threads, a.text, a.exact)
    if a.only in (None, "speed"):
        res["speed"] = speed(a.work, ["teacher-f32", *[n for n in names if not n.startswith("stages/")]],
                             a.rounds, a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"compress-{time.strftime('%Y-%m-%d-%H%M')}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2))
    stem.with_suffix(".md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
