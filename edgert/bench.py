"""`edgert bench MODEL`: how fast edgert loads, prefills and decodes a model, and how much memory it
takes, measured with the same protocol benchmarks/run_bench.py applies to llama.cpp, CTranslate2 and
ONNX Runtime GenAI (that script loads this file for the protocol, so every engine is timed by one
piece of code).

What is measured (every engine, every figure a median over `repeats` runs):
  load      constructor start to ready to eval: weights mapped, tokenizer parsed, context (KV cache,
            scratch, threads) created.
  prefill   n_prompt random token ids evaluated in one call from an empty cache, up to the first
            greedy token: prefill tok/s = n_prompt / TTFT.
  TTFT      time to first token of that prompt (= the prefill time plus one argmax).
  decode    n_gen greedy tokens, one token per eval, starting from a one-token context (as
            llama-bench's tg128): decode tok/s = n_gen / time.
  depth     optional: decode tok/s after `depth` tokens of context (the KV-cache benchmark).
  peak RSS  peak resident set of this process (VmHWM; see peak_rss_mb): interpreter, libraries,
            mapped weights touched, KV cache, scratch. Run one engine per process (run_bench.py does) or the figure mixes engines.

The module imports nothing of edgert at import time, so benchmarks/run_bench.py can load it in a venv
where only the peers are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional, Protocol, Sequence


class Engine(Protocol):
    """What the protocol needs of an engine: a vocabulary size and greedy generation from ids whose
    first token is yielded right after the prompt's eval, each later one after one decode step."""

    vocab_size: int

    def generate(self, prompt: Sequence[int], n_new: int) -> Iterator[int]: ...

    def close(self) -> None: ...


@dataclass
class BenchParams:
    n_prompt: int = 512    # 0: skip the prefill/TTFT scenario
    n_gen: int = 128
    repeats: int = 5
    long_prompt: int = 0   # also time TTFT of a prompt this long (0: off); issue 5 uses 2048
    depth: int = 0         # also time decode after this many tokens of context (0: off)
    seed: int = 0
    warmup: bool = True

    def n_ctx_needed(self) -> int:
        """Context the scenarios need, rounded up to 256 so every engine gets the same one."""
        need = max(self.n_prompt + 1, self.n_gen + 2, self.long_prompt + 1,
                   self.depth + self.n_gen + 2 if self.depth else 0)
        return (need + 255) // 256 * 256


@dataclass
class BenchResult:
    engine: str
    model: str
    n_threads: int
    params: dict[str, Any]
    load_ms: float = 0.0
    prefill_tok_s: Optional[float] = None
    ttft_ms: Optional[float] = None
    decode_tok_s: float = 0.0
    long_ttft_ms: Optional[float] = None
    depth_decode_tok_s: Optional[float] = None
    depth_ttft_ms: Optional[float] = None
    decode_tok_cpu_s: Optional[float] = None   # tokens per process-CPU second (see run_protocol)
    prefill_tok_cpu_s: Optional[float] = None
    rss_baseline_mb: float = 0.0
    peak_rss_mb: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# The protocol, shared by every engine

def random_prompt(n: int, vocab_size: int, seed: int) -> list[int]:
    """n ids drawn uniformly from [4, vocab_size): random text makes speed independent of content
    and skips the low ids where special tokens usually sit."""
    rng = random.Random(seed)
    return [rng.randrange(4, vocab_size) for _ in range(n)]


def peak_rss_mb() -> float:
    """Peak resident set of this process, in MiB.

    On Linux, VmHWM of /proc/self/status: ru_maxrss would be wrong in a worker process, because
    the kernel carries the parent's high-water mark across fork+exec (Python's subprocess uses
    vfork, so a 200 MB orchestrator makes every worker report at least 200 MB). Elsewhere
    ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def time_generation(engine: Engine, prompt: Sequence[int], n_new: int) -> tuple[float, float, int]:
    """(seconds to the first token, seconds for the n_new - 1 tokens after it, tokens yielded)."""
    t0 = time.perf_counter()
    it = engine.generate(prompt, n_new)
    first = next(it)
    del first
    t1 = time.perf_counter()
    n = 1
    for _ in it:
        n += 1
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, n


def run_protocol(engine: Engine, p: BenchParams) -> dict[str, Any]:
    """Run the scenarios `repeats` times; return medians and raw samples."""
    vocab = engine.vocab_size
    if p.warmup:  # page in the weights, spin up thread pools, let allocators settle
        time_generation(engine, random_prompt(16, vocab, 999), 8)
    samples: dict[str, list[float]] = {"ttft_s": [], "decode_tok_s": []}
    for r in range(p.repeats):
        # Process CPU time next to the wall clock: at one thread it is the work done, which stays
        # meaningful on a shared machine where the wall clock includes others' time slices.
        if p.n_prompt:
            c0 = time.process_time()
            ttft, _, _ = time_generation(engine, random_prompt(p.n_prompt, vocab, p.seed + r), 1)
            samples["ttft_s"].append(ttft)
            samples.setdefault("prefill_cpu_s", []).append(time.process_time() - c0)
        c0 = time.process_time()
        _, dt, n = time_generation(engine, random_prompt(1, vocab, p.seed + 100 + r), p.n_gen + 1)
        if n != p.n_gen + 1:
            raise RuntimeError(f"engine stopped after {n} tokens instead of {p.n_gen + 1}")
        samples["decode_tok_s"].append(p.n_gen / dt)
        # the n_gen + 1 steps of that generation (its first is a 1-token prompt: one decode step)
        samples.setdefault("decode_tok_cpu_s", []).append((p.n_gen + 1) / max(time.process_time() - c0, 1e-9))
        if p.long_prompt:
            ttft, _, _ = time_generation(engine, random_prompt(p.long_prompt, vocab, p.seed + 200 + r), 1)
            samples.setdefault("long_ttft_s", []).append(ttft)
        if p.depth:
            ttft, dt, n = time_generation(engine, random_prompt(p.depth, vocab, p.seed + 300 + r),
                                          p.n_gen + 1)
            samples.setdefault("depth_ttft_s", []).append(ttft)
            samples.setdefault("depth_decode_tok_s", []).append((n - 1) / dt)
    return {**summarize_samples(samples, p.n_prompt), "samples": samples}


def summarize_samples(samples: dict[str, list[float]], n_prompt: int) -> dict[str, Any]:
    """The reported figures from raw timing samples (medians): one worker's repeats here, every
    round's samples pooled in benchmarks/run_bench.py."""
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    out: dict[str, Any] = {"decode_tok_s": med.get("decode_tok_s")}
    if "ttft_s" in med:
        out["ttft_ms"] = med["ttft_s"] * 1e3
        out["prefill_tok_s"] = n_prompt / med["ttft_s"]
    # per process-CPU second (every thread's CPU time counts; see run_protocol)
    if "decode_tok_cpu_s" in med:
        out["decode_tok_cpu_s"] = med["decode_tok_cpu_s"]
    if "prefill_cpu_s" in med and n_prompt:
        out["prefill_tok_cpu_s"] = n_prompt / med["prefill_cpu_s"]
    if "long_ttft_s" in med:
        out["long_ttft_ms"] = med["long_ttft_s"] * 1e3
    if "depth_decode_tok_s" in med:
        out["depth_decode_tok_s"] = med["depth_decode_tok_s"]
        out["depth_ttft_ms"] = med["depth_ttft_s"] * 1e3
    return out


def bench_engine(name: str, model: str, n_threads: int, open_engine: Any, p: BenchParams,
                 extra: Optional[dict[str, Any]] = None) -> BenchResult:
    """Time open_engine() (the load), run the protocol, read the peak RSS, close."""
    res = BenchResult(engine=name, model=model, n_threads=n_threads, params=asdict(p),
                      extra=dict(extra or {}))
    res.rss_baseline_mb = peak_rss_mb()
    t0 = time.perf_counter()
    engine = open_engine()
    res.load_ms = (time.perf_counter() - t0) * 1e3
    try:
        for k, v in run_protocol(engine, p).items():
            setattr(res, k, v)
        res.extra.update(getattr(engine, "info", {}) or {})
    finally:
        res.peak_rss_mb = peak_rss_mb()
        engine.close()
    return res


# ---------------------------------------------------------------------------------------------
# edgert

class EdgertEngine:
    """Greedy generation straight on edgert's Context (no tokenizer, no sampler object: argmax in
    numpy, the same as the peers' adapters in benchmarks/engines.py)."""

    def __init__(self, path: str, n_ctx: int, n_threads: int, n_threads_batch: int = 0,
                 kv_type: str = "f16") -> None:
        import numpy as np
        import edgert
        from edgert import _edgert

        self._np = np
        self.llm = edgert.LLM(path, n_ctx=n_ctx, n_threads=n_threads,
                              n_threads_batch=n_threads_batch or n_threads, kv_type=kv_type)
        self.ctx = self.llm.context
        self.vocab_size = self.llm.info.vocab_size
        lib = os.stat(_edgert.__file__)
        self.info = {
            # which build ran: a rebuild between runs changes it (run_bench.py warns)
            "native_lib": f"{_edgert.__file__}:{lib.st_size}:{int(lib.st_mtime)}",
            "isa": _edgert.isa() if hasattr(_edgert, "isa") else None,
            "kv_type": kv_type,
            "n_ctx": self.ctx.n_ctx,
            "kv_bytes_per_token": self.ctx.kv_bytes_per_token,
            "weights_bytes": self.llm.info.weights_size,
            "relayout": asdict(self.llm.layout),
            "file_bytes": self.llm.info.file_size,
        }

    def generate(self, prompt: Sequence[int], n_new: int) -> Iterator[int]:
        np = self._np
        self.ctx.reset()
        logits = self.ctx.eval(np.asarray(prompt, dtype=np.int64))
        tok = int(np.argmax(logits))
        yield tok
        one = np.empty(1, dtype=np.int64)
        for _ in range(n_new - 1):
            one[0] = tok
            logits = self.ctx.eval(one)
            tok = int(np.argmax(logits))
            yield tok

    def close(self) -> None:
        self.llm.close()


def bench_edgert(path: str, n_prompt: int = 512, n_gen: int = 128, n_threads: int = 2,
                 repeats: int = 5, *, n_threads_batch: int = 0, kv_type: str = "f16",
                 n_ctx: int = 0, long_prompt: int = 0, depth: int = 0,
                 warmup: bool = True) -> dict[str, Any]:
    """Benchmark an .edgt file in this process; returns BenchResult as a dict (see module doc)."""
    p = BenchParams(n_prompt=n_prompt, n_gen=n_gen, repeats=repeats, long_prompt=long_prompt,
                    depth=depth, warmup=warmup)
    n_ctx = n_ctx or p.n_ctx_needed()
    res = bench_engine(
        "edgert", os.path.basename(path), n_threads,
        lambda: EdgertEngine(path, n_ctx, n_threads, n_threads_batch, kv_type), p,
        extra={"kv_type": kv_type, "n_threads_batch": n_threads_batch or n_threads})
    return res.to_dict()


# ---------------------------------------------------------------------------------------------
# Speculative decoding: plain greedy decode vs speculative, on the same prompts, same run

# Two input-grounded prompts (the answer copies spans of the prompt); benchmarks/prompts/
# input_grounded.json has the full set (--prompts).
BUILTIN_SPEC_PROMPTS = [
    {"name": "repeat", "messages": [{"role": "user", "content":
        "Copy the following text exactly, then stop.\n\nThe Harbour Bridge opened in 1932 after "
        "eight years of construction. It carries eight lanes of road traffic, two railway lines "
        "and a footway. The arch spans 503 metres, and the top of the arch stands 134 metres "
        "above the water."}]},
    {"name": "code-edit", "messages": [{"role": "user", "content":
        "Rename the variable `items` to `products` in this Python code and show the whole "
        "code.\n\n```python\ndef total_price(items, tax_rate):\n    subtotal = 0\n    for item "
        "in items:\n        subtotal += item.price * item.quantity\n    return subtotal * (1 + "
        "tax_rate)\n```"}]},
]


class AlwaysWrongDraft:
    """A draft source whose proposals are rejected: token id 0 (<unk> / a special token the
    target does not pick), k times. What speculation costs at 0% acceptance, with the adaptive
    back-off of edgert.speculative in place."""

    def __init__(self) -> None:
        from edgert.speculative import PromptLookup
        self._adapt = PromptLookup()._adapt

    def begin(self, history: Sequence[int], params: Any) -> None:
        self._adapt.reset()

    def propose(self, history: Sequence[int], room: int) -> Any:
        from edgert.speculative import Drafts
        if not self._adapt.ready():
            return None
        return Drafts([0] * min(self._adapt.k, room))

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        self._adapt.feedback(n_drafted, n_accepted)


def bench_speculative(path: str, prompts: Sequence[dict[str, Any]], n_gen: int = 128,
                      n_threads: int = 2, repeats: int = 3, *, draft: Optional[str] = None,
                      kv_type: str = "auto", n_ctx: int = 2048,
                      modes: Sequence[str] = ("lookup",)) -> dict[str, Any]:
    """Greedy decode tok/s of each prompt with speculative="off" and with each mode ("lookup",
    "draft", "always-wrong"), interleaved per round; medians. Checks the texts are identical.
    With n_threads == 1 the whole forward pass runs on the calling thread, so its CPU time per
    decoded token is also reported (cpu_tok_s): on a loaded machine it moves far less than wall
    time, which is what a few-percent cost (speculation at 0% acceptance) needs."""
    from edgert.llm import LLM
    from edgert.model import SamplerParams
    out: dict[str, Any] = {"model": os.path.basename(path), "n_threads": n_threads,
                           "n_gen": n_gen, "repeats": repeats, "kv_type": kv_type,
                           "draft": os.path.basename(draft) if draft else None, "prompts": []}
    with LLM(path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, kv_type=kv_type,
             draft=draft) as llm:
        has_template = bool(llm.metadata.get("chat_template"))
        for pr in prompts:
            if has_template:
                ids = llm.tokenize(llm.render_chat(pr["messages"]), add_bos=False)
            else:
                ids = llm.tokenize(pr["messages"][-1]["content"])
            samples: dict[str, list[float]] = {m: [] for m in ("off", *modes)}
            cpu: dict[str, list[float]] = {m: [] for m in ("off", *modes)}
            texts: dict[str, list[int]] = {}
            acc: dict[str, Any] = {}
            for _ in range(repeats):
                for mode in ("off", *modes):
                    src = AlwaysWrongDraft() if mode == "always-wrong" else \
                        llm.draft_source(SamplerParams(), mode)
                    llm.reset()
                    t = Timings_()
                    toks: list[int] = []
                    c0 = 0.0
                    for st in llm._session.steps(ids, n_gen, SamplerParams(), draft=src,
                                                 timings=t):
                        if not toks:
                            c0 = time.thread_time()  # decode starts after the first token
                        toks.append(st.token)
                    if len(toks) > 1:
                        cpu[mode].append((len(toks) - 1) / max(time.thread_time() - c0, 1e-9))
                    texts.setdefault(mode, toks)
                    if toks != texts["off"] and mode != "off":
                        raise RuntimeError(f"speculative mode {mode} changed the greedy tokens "
                                           f"of prompt {pr.get('name')}")
                    samples[mode].append(t.n_generated / t.decode_s if t.decode_s > 0 else 0.0)
                    if mode != "off":
                        acc[mode] = {"drafted": t.n_drafted, "accepted": t.n_accepted,
                                     "acceptance": t.acceptance, "passes": t.n_verify_passes}
            med = {m: statistics.median(v) for m, v in samples.items()}
            med_cpu = {m: statistics.median(v) for m, v in cpu.items() if v}
            out["prompts"].append({
                "name": pr.get("name", ""), "n_prompt": len(ids), "n_generated": len(texts["off"]),
                "decode_tok_s": med, "speedup": {m: med[m] / med["off"] for m in modes
                                                 if med["off"] > 0},
                "speculation": acc, "identical": True, "samples": samples,
                "cpu_tok_s": med_cpu if n_threads == 1 else None})
    sp = {m: [p["speedup"][m] for p in out["prompts"] if m in p["speedup"]] for m in modes}
    out["speedup_median"] = {m: statistics.median(v) for m, v in sp.items() if v}
    tot = {m: (sum(p["n_generated"] for p in out["prompts"]) /
               sum(p["n_generated"] / p["decode_tok_s"][m] for p in out["prompts"]))
           for m in ("off", *modes)}
    out["aggregate_decode_tok_s"] = tot
    if n_threads == 1 and all(p["cpu_tok_s"] and len(p["cpu_tok_s"]) == len(modes) + 1
                              for p in out["prompts"]):
        out["cpu_speedup_median"] = {m: statistics.median(
            p["cpu_tok_s"][m] / p["cpu_tok_s"]["off"] for p in out["prompts"]) for m in modes}
    return out


def Timings_() -> Any:  # imported late: this module must import without edgert's native code
    from edgert.session import Timings
    return Timings()


def format_speculative(r: dict[str, Any]) -> str:
    lines = [f"model        {r['model']}  ({r['n_threads']} threads, {r['repeats']} rounds, "
             f"medians, greedy, {r['n_gen']} tokens max, KV {r['kv_type']}"
             + (f", draft {r['draft']}" if r["draft"] else "") + ")"]
    for p in r["prompts"]:
        parts = [f"off {p['decode_tok_s']['off']:6.1f} tok/s"]
        for m, v in p["speedup"].items():
            a = p["speculation"][m]
            rate = f"{a['acceptance'] * 100:.0f}%" if a["acceptance"] is not None else "-"
            parts.append(f"{m} {p['decode_tok_s'][m]:6.1f} tok/s ({v:.2f}x, accepted "
                         f"{a['accepted']}/{a['drafted']} = {rate})")
        lines.append(f"{p['name'][:20]:20s} {p['n_generated']:4d} tok  " + "  ".join(parts))
    agg = r["aggregate_decode_tok_s"]
    lines.append("aggregate            " + "  ".join(
        f"{m} {v:6.1f} tok/s" + (f" ({v / agg['off']:.2f}x)" if m != "off" else "")
        for m, v in agg.items()) + "   identical greedy text: yes")
    if r.get("cpu_speedup_median"):
        lines.append("thread CPU time per decoded token, median ratio over prompts: " + "  ".join(
            f"{m} {v:.3f}x" for m, v in r["cpu_speedup_median"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI: edgert bench

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .edgt file (a .gguf is converted to a temporary .edgt first)")
    p.add_argument("-t", "--threads", type=int, default=0,
                   help="decode threads (0: all cores of this machine)")
    p.add_argument("--threads-batch", type=int, default=0, help="prefill threads (0: --threads)")
    p.add_argument("--n-prompt", type=int, default=512, help="prompt tokens for prefill/TTFT")
    p.add_argument("--n-gen", type=int, default=128, help="tokens to decode")
    p.add_argument("--repeats", type=int, default=5, help="runs per figure (medians reported)")
    p.add_argument("--kv-type", default="f16", choices=["f32", "f16", "q8", "q4"])
    p.add_argument("--long-prompt", type=int, default=0, metavar="N",
                   help="also time TTFT of an N-token prompt (e.g. 2048)")
    p.add_argument("--depth", type=int, default=0, metavar="N",
                   help="also time decode after N tokens of context (e.g. 4096)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--speculative", action="store_true",
                   help="instead: greedy decode with and without speculative decoding on "
                        "input-grounded prompts (identical text checked; acceptance, tok/s)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="with --speculative: prompts JSON (benchmarks/prompts/input_grounded.json)")
    p.add_argument("--draft", default=None, metavar="MODEL",
                   help="with --speculative: also measure this draft model")
    p.add_argument("--always-wrong", action="store_true",
                   help="with --speculative: also measure drafts that are always rejected "
                        "(the cost of speculation at 0%% acceptance)")


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"model        {r['model']}  ({r['n_threads']} threads, "
        f"{r['params']['repeats']} runs, medians)",
        f"load         {r['load_ms']:9.1f} ms",
    ]
    if r.get("prefill_tok_s") is not None:
        lines += [
            f"prefill      {r['prefill_tok_s']:9.1f} tok/s   ({r['params']['n_prompt']}-token prompt)",
            f"TTFT         {r['ttft_ms']:9.1f} ms",
        ]
    lines.append(f"decode       {r['decode_tok_s']:9.1f} tok/s   ({r['params']['n_gen']} tokens)")
    if r.get("long_ttft_ms") is not None:
        lines.append(f"TTFT@{r['params']['long_prompt']:<7d}{r['long_ttft_ms']:9.1f} ms")
    if r.get("depth_decode_tok_s") is not None:
        lines.append(f"decode@{r['params']['depth']:<5d} {r['depth_decode_tok_s']:9.1f} tok/s   "
                     f"(KV {r['extra'].get('kv_type')})")
    lines.append(f"peak RSS     {r['peak_rss_mb']:9.1f} MB  (process, {r['rss_baseline_mb']:.1f} MB "
                 "before loading)")
    if r["extra"].get("isa"):
        lines.append(f"ISA          {r['extra']['isa']}")
    relayout = r["extra"].get("relayout")
    if relayout and relayout["isa"]:
        lines.append(f"re-layout    {relayout['bytes'] / 1e6:9.1f} MB for {relayout['isa']} in "
                     f"{relayout['seconds'] * 1e3:.0f} ms at load (part of load)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    n_threads = args.threads or (os.cpu_count() or 1)
    path, tmpdir = args.model, None
    if path.endswith(".gguf"):
        from edgert.converters import convert
        tmpdir = tempfile.TemporaryDirectory(prefix="edgert-bench-")
        out = os.path.join(tmpdir.name, os.path.basename(path)[:-5] + ".edgt")
        print(f"converting {path} -> {out}", file=sys.stderr)
        convert(path, out)
        path = out
    try:
        if getattr(args, "speculative", False):
            prompts = BUILTIN_SPEC_PROMPTS
            if args.prompts:
                with open(args.prompts, encoding="utf-8") as f:
                    prompts = json.load(f)["prompts"]
            modes = ["lookup"] + (["draft"] if args.draft else []) + \
                (["always-wrong"] if args.always_wrong else [])
            kv = "auto" if args.kv_type == "f16" and "--kv-type" not in sys.argv else args.kv_type
            rs = bench_speculative(path, prompts, args.n_gen, n_threads, args.repeats,
                                   draft=args.draft, kv_type=kv, modes=modes)
            print(json.dumps(rs, indent=2) if args.json else format_speculative(rs))
            return 0
        r = bench_edgert(path, args.n_prompt, args.n_gen, n_threads, args.repeats,
                         n_threads_batch=args.threads_batch, kv_type=args.kv_type,
                         long_prompt=args.long_prompt, depth=args.depth)
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    r["model"] = os.path.basename(args.model)
    print(json.dumps(r, indent=2) if args.json else format_result(r))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="edgert bench", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    sys.exit(run(ap.parse_args()))
