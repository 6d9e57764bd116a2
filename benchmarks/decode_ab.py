"""Interleaved decode A/B of .edgt files: each round runs `edgert bench FILE --n-prompt 16 --n-gen N
--repeats 1` once per file, in a fresh process, alternating files, so slow drifts of a shared
machine hit every file alike. Prints each file's median tok/s, its ratio to the first file's
median, and the median and minimum of the per-round ratios (the robust figure on a noisy machine).

    python benchmarks/decode_ab.py q4_0=rtn-q4_0.edgt q3=mix.edgt --rounds 5 --threads 1
    python benchmarks/decode_ab.py ... --json out.json

Check load first (`uptime`): 2 shared cores give wrong ratios when something else runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def one(path: str, threads: int, n_gen: int) -> float:
    out = subprocess.run([sys.executable, "-m", "edgert", "bench", path, "-t", str(threads), "--n-prompt", "16",
                          "--n-gen", str(n_gen), "--repeats", "1", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["decode_tok_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="NAME=FILE", help="the first is the baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    pairs = []
    for spec in a.files:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"{spec!r}: expected NAME=FILE with an existing file")
        pairs.append((name, path))
    tok = {n: [] for n, _ in pairs}
    loads = []
    for r in range(a.rounds):
        for n, p in pairs:
            loads.append(loadavg())
            tok[n].append(one(p, a.threads, a.n_gen))
        print(f"round {r}: " + "  ".join(f"{n} {v[-1]:.2f}" for n, v in tok.items()), flush=True)
    base = pairs[0][0]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": a.threads, "n_gen": a.n_gen,
           "loadavg": {"min": min(loads), "max": max(loads)}, "files": dict(pairs), "tok_s": tok, "summary": {}}
    print(f"loadavg {min(loads):.2f}-{max(loads):.2f}, {a.threads} thread(s), n_gen {a.n_gen}")
    for n, v in tok.items():
        ratios = [x / y for x, y in zip(v, tok[base])]
        s = {"median_tok_s": statistics.median(v), "ratio": statistics.median(v) / statistics.median(tok[base]),
             "round_ratio_median": statistics.median(ratios), "round_ratio_min": min(ratios)}
        res["summary"][n] = s
        print(f"{n:>12}: {s['median_tok_s']:7.2f} tok/s  x{s['ratio']:.3f} vs {base}  "
              f"(per round: median x{s['round_ratio_median']:.3f}, min x{s['round_ratio_min']:.3f})")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
