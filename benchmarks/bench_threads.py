"""Decode speed at 1 vs 2 threads (or any thread counts), interleaved in one process, per weight type.

    python benchmarks/bench_threads.py                       # SmolLM2-135M in every recipe
    python benchmarks/bench_threads.py --types q4_0,q8_0 --rounds 15 --n-gen 128
    python benchmarks/bench_threads.py --shape tinyllama-1.1b --types q4_0,q4_1,q8_0,f16
    python benchmarks/bench_threads.py --model a.edgt --model b.edgt   # files of your own

Issue 11's target: decode with 2 threads is never slower than with 1, for every weight type. One
Model is opened per file and one Context per thread count, so every thread count runs the same
weights in the same process; each round times every thread count once (in alternating order, with
a pause between so idle workers fall asleep) and the ratio is taken per round, so machine drift
between rounds cancels. Reported: median tok/s per thread count, the median and worst per-round
ratio against the first thread count, and /proc/loadavg before and after (on a busy machine
2-thread figures fall apart: a descheduled thread stalls every barrier; rerun when quiet).

Weight types come from converting the shared SmolLM2-135M-Instruct Q4_1 GGUF (--shape smollm2, the
default) or the random-weight f16 checkpoint make_models.py writes for a shape of its SHAPES
(--shape tinyllama-1.1b, smollm2-135m) with each recipe of edgert.converters, cached under --cache;
a new recipe shows up here by itself.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2_GGUF = REPO.parent / "shared" / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def model_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    if args.model:
        return [(Path(m).stem, Path(m)) for m in args.model]
    from edgert.converters import RECIPES, convert
    types = args.types.split(",") if args.types else [r for r in RECIPES if r not in ("f32", "bf16")]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.shape == "smollm2":
        source, prefix = SMOLLM2_GGUF, "smollm2"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import make_models
        source, prefix = cache / args.shape / "hf", args.shape
        if not (source / "model.safetensors").exists():
            make_models.write_hf(make_models.SHAPES[args.shape], source)
    out = []
    for t in types:
        path = cache / f"{prefix}-{t}.edgt"
        if not path.exists():
            convert(source, path, quantize=t, progress=False)
        out.append((t, path))
    return out


def decode_tok_s(ctx, sampler, prompt: list[int], n_gen: int) -> float:
    ctx.reset()
    sampler.reset()
    t0 = time.perf_counter()
    n = ctx.generate(sampler, prompt, n_gen)
    return n / (time.perf_counter() - t0)


def bench_file(path: Path, threads: list[int], rounds: int, n_gen: int, pause: float) -> dict:
    from edgert.model import ContextParams, Model, Sampler, SamplerParams
    prompt = list(range(1, 9))
    with Model(path) as m:
        ctxs = [m.new_context(ContextParams(n_ctx=n_gen + 16, n_threads=t, kv_type="auto")) for t in threads]
        with Sampler(SamplerParams(temperature=0.0)) as s:
            for c in ctxs:  # warm-up: page in the weights, start the workers
                decode_tok_s(c, s, prompt, min(n_gen, 16))
            samples: list[list[float]] = [[] for _ in threads]
            for r in range(rounds):
                order = range(len(threads)) if r % 2 == 0 else reversed(range(len(threads)))
                for i in order:
                    time.sleep(pause)
                    samples[i].append(decode_tok_s(ctxs[i], s, prompt, n_gen))
        for c in ctxs:
            c.close()
    out = {"threads": threads, "median_tok_s": [statistics.median(x) for x in samples], "ratios": {}}
    for i in range(1, len(threads)):
        per_round = [b / a for a, b in zip(samples[0], samples[i])]
        out["ratios"][f"{threads[i]}/{threads[0]}"] = {
            "median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}
    out["samples"] = samples
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", help=".edgt file (repeatable); default: SmolLM2 per recipe")
    p.add_argument("--shape", default="smollm2", choices=["smollm2", "smollm2-135m", "tinyllama-1.1b"],
                   help="smollm2: the real SmolLM2 GGUF; otherwise make_models.py's random weights of that shape")
    p.add_argument("--types", default="", help="recipes to convert the source to (default: all but f32/bf16)")
    p.add_argument("--cache", default="/tmp/edgert-bench-threads", help="where converted files are kept")
    p.add_argument("--threads", default="1,2", help="thread counts, the first is the baseline")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--n-gen", type=int, default=64)
    p.add_argument("--pause", type=float, default=0.02, help="seconds between runs (workers fall asleep)")
    p.add_argument("--json", help="also write every sample here")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    files = model_files(args)
    import edgert._edgert as native
    print(f"edgert native library {native.__file__}; loadavg before {loadavg()}")
    results = {}
    for name, path in files:
        r = bench_file(path, threads, args.rounds, args.n_gen, args.pause)
        results[name] = r
        ratios = "  ".join(f"{k}: median {v['median']:.3f} (min {v['min']:.3f})" for k, v in r["ratios"].items())
        tok = "  ".join(f"{t}t {x:.1f}" for t, x in zip(threads, r["median_tok_s"]))
        print(f"{args.shape} {name:8s} decode tok/s {tok}  |  {ratios}  |  loadavg {loadavg()}", flush=True)
    print(f"loadavg after {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
