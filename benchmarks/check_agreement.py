#!/usr/bin/env python3
"""check_agreement.py — before trusting a speed figure, check that the engines compute the same
thing: edgert on the .edgt and llama.cpp on the GGUF it was converted from, same prompt, compared
on the last position's logits (correlation, top-1) and on 16 greedy tokens. A fast path that skips
work shows up here, not in the timing table.

    /work/bench-venv/bin/python benchmarks/check_agreement.py MODEL.gguf MODEL.edgt [--threads N]

Each engine runs in its own process (engines.py's adapters); prints one JSON object, exits 1 when
the correlation is below --min-corr.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import engines
engine, path, threads = sys.argv[2], sys.argv[3], int(sys.argv[4])
ids = [int(i) for i in np.random.default_rng(7).integers(4, 30000, 64)]
if engine == "llama.cpp":
    e = engines.LlamaCppEngine(path, 256, threads, threads)
    def last_logits(prompt):
        e.llm.reset(); e.llm.eval(prompt)
        return np.ctypeslib.as_array(e.llm._ctx.get_logits_ith(-1), shape=(e.vocab_size,)).copy()
else:
    bench = engines.load_protocol()
    try:
        import edgert._edgert  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(engines.REPO))
    e = bench.EdgertEngine(path, 256, threads, threads)
    def last_logits(prompt):
        e.ctx.reset()
        return np.asarray(e.ctx.eval(np.asarray(prompt, dtype=np.int64)), dtype=np.float32)
ids = [i % e.vocab_size for i in ids]
logits = last_logits(ids)
greedy = list(e.generate(ids, 16))
np.save(sys.argv[5], logits)
print(json.dumps({"greedy": greedy, "vocab": e.vocab_size}))
e.close()
"""


def run(engine: str, path: str, threads: int, out: Path, python: str) -> dict:
    p = subprocess.run([python, "-c", WORKER, str(HERE), engine, path, str(threads), str(out)],
                       capture_output=True, text=True, cwd="/")
    if p.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    import numpy as np
    sys.path.insert(0, str(HERE))
    from run_bench import bench_python, edgert_python

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("edgt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-corr", type=float, default=0.99)
    ap.add_argument("--edgert-python")
    args = ap.parse_args()
    tmp = Path("/tmp") / f"edgert-agree-{Path(args.edgt).stem}"
    a = run("llama.cpp", args.gguf, args.threads, tmp.with_suffix(".llama.npy"), bench_python())
    epy = edgert_python(args.edgert_python)
    if not epy:
        raise SystemExit("no interpreter imports edgert._edgert")
    b = run("edgert", args.edgt, args.threads, tmp.with_suffix(".edgert.npy"), epy)
    la = np.load(tmp.with_suffix(".llama.npy"))
    lb = np.load(tmp.with_suffix(".edgert.npy"))
    corr = float(np.corrcoef(la, lb)[0, 1])
    same = sum(x == y for x, y in zip(a["greedy"], b["greedy"]))
    res = {"gguf": args.gguf, "edgt": args.edgt, "logits_corr": round(corr, 6),
           "max_abs_diff": float(np.abs(la - lb).max()), "logit_std": float(la.std()),
           "top1_equal": int(la.argmax()) == int(lb.argmax()),
           "greedy_equal_prefix": next((i for i, (x, y) in enumerate(zip(a["greedy"], b["greedy"]))
                                        if x != y), len(a["greedy"])),
           "greedy_equal_tokens": same, "greedy_llama": a["greedy"], "greedy_edgert": b["greedy"]}
    print(json.dumps(res, indent=1))
    return 0 if corr >= args.min_corr else 1


if __name__ == "__main__":
    sys.exit(main())
