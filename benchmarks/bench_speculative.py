"""Speculative decoding benchmark (issue 12): greedy decode tok/s with and without speculation on
input-grounded prompts (benchmarks/prompts/input_grounded.json: rewrite, summarise, code edit),
identical text checked, acceptance reported; then llama.cpp's own prompt-lookup decoding
(llama-cpp-python's LlamaPromptLookupDecoding) on the same GGUF and prompts, when installed.

    python benchmarks/bench_speculative.py MODEL.edgt [--gguf MODEL.gguf] [--draft DRAFT.edgt]
        [--rounds 3] [--n-gen 128] [--threads 2] [--always-wrong]

The edgert part is `edgert bench MODEL --speculative --prompts ...` (edgert/bench.py); this script
adds the llama.cpp comparison. For the cost of speculation when nothing can be copied, run it on
a random-weight model (benchmarks/make_models.py, TinyLlama shape) with --always-wrong: every
draft is rejected there, and the ratio to "off" is the verification cost at 0% acceptance.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def llama_cpp_lookup(gguf: str, prompts: list[dict], n_gen: int, threads: int,
                     rounds: int) -> dict[str, Any]:
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    res: dict[str, Any] = {"prompts": []}
    models = {
        "off": llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_threads=threads,
                               n_threads_batch=threads, verbose=False),
        "lookup": llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_threads=threads,
                                  n_threads_batch=threads, verbose=False,
                                  draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10)),
    }
    for pr in prompts:
        samples: dict[str, list[float]] = {m: [] for m in models}
        texts: dict[str, str] = {}
        for _ in range(rounds):
            for mode, llm in models.items():
                llm.reset()
                t0 = time.perf_counter()
                t_first, n, parts = None, 0, []
                for ev in llm.create_chat_completion(pr["messages"], max_tokens=n_gen,
                                                     temperature=0.0, stream=True):
                    delta = ev["choices"][0]["delta"].get("content")
                    if delta:
                        n += 1
                        parts.append(delta)
                        if t_first is None:
                            t_first = time.perf_counter()
                t1 = time.perf_counter()
                texts.setdefault(mode, "".join(parts))
                samples[mode].append((n - 1) / (t1 - t_first) if t_first and n > 1 else 0.0)
        med = {m: statistics.median(v) for m, v in samples.items()}
        res["prompts"].append({"name": pr["name"], "decode_tok_s": med,
                               "speedup": med["lookup"] / med["off"] if med["off"] else None,
                               "identical": texts["off"] == texts["lookup"]})
    res["speedup_median"] = statistics.median(p["speedup"] for p in res["prompts"] if p["speedup"])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--gguf", default=None, help="the same model as GGUF, for llama.cpp")
    ap.add_argument("--draft", default=None)
    ap.add_argument("--prompts", default=str(HERE / "prompts" / "input_grounded.json"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-type", default="auto")
    ap.add_argument("--always-wrong", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from edgert.bench import bench_speculative, format_speculative
    prompts = json.loads(Path(args.prompts).read_text())["prompts"]
    modes = ["lookup"] + (["draft"] if args.draft else []) + (["always-wrong"] if args.always_wrong else [])
    load0 = loadavg()
    r = bench_speculative(args.model, prompts, args.n_gen, args.threads, args.rounds,
                          draft=args.draft, kv_type=args.kv_type, modes=modes)
    r["loadavg"] = [load0, loadavg()]
    print(format_speculative(r))
    print(f"median speed-up per prompt: " + ", ".join(f"{m} {v:.2f}x" for m, v in r["speedup_median"].items())
          + f"   (loadavg {load0} -> {loadavg()})")
    out = {"edgert": r}
    if args.gguf:
        try:
            lc = llama_cpp_lookup(args.gguf, prompts, args.n_gen, args.threads, args.rounds)
        except ImportError as e:
            print(f"llama.cpp: not installed ({e}); bash benchmarks/setup_peers.sh builds it")
        else:
            out["llama_cpp"] = lc
            for p in lc["prompts"]:
                print(f"llama.cpp {p['name'][:20]:20s} off {p['decode_tok_s']['off']:6.1f} tok/s  "
                      f"lookup {p['decode_tok_s']['lookup']:6.1f} tok/s ({p['speedup']:.2f}x)"
                      f"{'' if p['identical'] else '  TEXT DIFFERS'}")
            print(f"llama.cpp LlamaPromptLookupDecoding median speed-up: {lc['speedup_median']:.2f}x "
                  f"(loadavg {loadavg()})")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
