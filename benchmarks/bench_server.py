"""Benchmarks of `edgert serve` and structured output (issue 12's targets), run against a real
server process on loopback, as an app would use it.

  overhead     one streamed chat completion through HTTP (the official `openai` client) vs the
               same LLM.chat(stream=True) in process, greedy, --n-gen tokens, A/B interleaved per
               round; medians of wall time. Target: HTTP <= 1.05x. Also the CPU time per
               completion (server process + client process vs the in-process call), which the
               other load on a shared machine moves far less than wall time.
  concurrency  8 clients streaming different prompts at once on `--parallel 4` vs the same
               prompts one at a time on the same server; every concurrent answer must equal its
               sequential one (greedy). Target: aggregate decode tok/s >= 1.5x one client's.
               The same with `--no-batch` (slots decoding each on its own) for comparison.
  json         100 chat requests with a JSON schema (varied prompts, temperature 0.7, seeds
               1..100) through the server: every output must parse and validate (jsonschema).
               In process: the grammar mask's share of decode time per token (time in
               Constraint.mask + accept over decode time). Target: <= 10%.

    python benchmarks/bench_server.py MODEL.edgt [--only overhead,concurrency,json] [--rounds 5]

Prints /proc/loadavg with every figure; run it on a quiet machine for numbers to keep.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

PROMPTS = ["Write a long story about a lighthouse keeper.", "Explain how a bicycle works.",
           "Describe a day at the beach.", "Tell me about the history of bread.",
           "Write a poem about autumn leaves.", "How do bees make honey?",
           "Describe the planet Mars.", "Write a letter to a friend about a trip to Rome."]

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120},
                   "city": {"type": "string", "maxLength": 40},
                   "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30},
                               "maxItems": 3}},
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
JSON_TOPICS = ["a baker", "a pilot", "a teacher", "a gardener", "a painter", "a sailor",
               "a doctor", "a musician", "a chef", "an astronaut"]


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, model: str, parallel: int, threads: int, n_ctx: int,
                 speculative: str, batch: bool = True) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "edgert", "serve", model, "--port", str(self.port),
               "--parallel", str(parallel), "--ctx", str(n_ctx), "--speculative", speculative,
               "--queue", "64"]
        if threads:
            cmd += ["--threads", str(threads)]
        if not batch:
            cmd.append("--no-batch")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("edgert serve did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process pid so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_chat(client: Any, prompt: str, n_gen: int, **kw: Any) -> tuple[str, int, float]:
    t0 = time.perf_counter()
    parts, n = [], 0
    for ev in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": prompt}], temperature=0,
            max_tokens=n_gen, stream=True, stream_options={"include_usage": True}, **kw):
        if ev.choices and ev.choices[0].delta.content:
            parts.append(ev.choices[0].delta.content)
        if ev.usage:
            n = ev.usage.completion_tokens
    return "".join(parts), n, time.perf_counter() - t0


def bench_overhead(model: str, n_gen: int, rounds: int, threads: int) -> dict[str, Any]:
    import openai
    from edgert import LLM
    srv = ServerProcess(model, 1, threads, 2048, "off")
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=600)
        with LLM(model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                 speculative="off") as llm:
            msgs = [{"role": "user", "content": PROMPTS[0]}]
            http_s, local_s, http_cpu, local_cpu = [], [], [], []
            stream_chat(client, PROMPTS[0], 8)  # warm both
            "".join(llm.chat(msgs, max_tokens=8, stream=True))
            for _ in range(rounds):
                llm.reset()  # cold prompt in both: the server's slot holds a different prompt
                c0, t0 = time.process_time(), time.perf_counter()
                local = "".join(llm.chat(msgs, max_tokens=n_gen, stream=True))
                local_s.append(time.perf_counter() - t0)
                local_cpu.append(time.process_time() - c0)
                n_local = llm.last_timings.n_generated
                stream_chat(client, "Say hi.", 2)  # evict the slot's prompt: a cold prompt too
                s0, c0 = process_cpu_s(srv.proc.pid), time.process_time()
                text, n, dt = stream_chat(client, PROMPTS[0], n_gen)
                http_cpu.append(process_cpu_s(srv.proc.pid) - s0 + time.process_time() - c0)
                http_s.append(dt)
                assert text == local and n == n_local, "HTTP and in-process answers differ"
    finally:
        srv.close()
    med = statistics.median
    return {"n_tokens": n_local, "rounds": rounds, "in_process_s": med(local_s),
            "http_s": med(http_s), "ratio": med(http_s) / med(local_s),
            "in_process_cpu_s": med(local_cpu), "http_cpu_s": med(http_cpu),
            "cpu_ratio": med(http_cpu) / med(local_cpu),
            "samples": {"in_process": local_s, "http": http_s, "in_process_cpu": local_cpu,
                        "http_cpu": http_cpu}, "loadavg": loadavg()}


def bench_concurrency(model: str, n_gen: int, parallel: int, clients: int) -> dict[str, Any]:
    import openai
    out: dict[str, Any] = {"parallel": parallel, "clients": clients, "n_gen": n_gen}
    for label, par, batch in (("single_on_parallel_1", 1, True), ("server", parallel, True),
                              ("server_no_batch", parallel, False)):
        srv = ServerProcess(model, par, 0, 1024, "off", batch)
        try:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0,
                                   timeout=900)
            stream_chat(client, "Hi", 4)
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(clients)]
            seq: dict[str, str] = {}
            t0 = time.perf_counter()
            n_seq = 0
            for p in prompts:
                text, n, _ = stream_chat(client, p, n_gen)
                seq[p] = text
                n_seq += n
            seq_s = time.perf_counter() - t0
            out[f"{label}_tok_s"] = n_seq / seq_s
            if label == "single_on_parallel_1":
                continue
            sfx = "" if label == "server" else "_no_batch"
            results: dict[int, tuple[str, int]] = {}

            def one(i: int) -> None:
                c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0,
                                  timeout=900)
                text, n, _ = stream_chat(c, prompts[i], n_gen)
                results[i] = (text, n)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            conc_s = time.perf_counter() - t0
            n_conc = sum(n for _, n in results.values())
            out["aggregate_tok_s" + sfx] = n_conc / conc_s
            out["all_correct" + sfx] = all(results[i][0] == seq[prompts[i]] for i in range(clients))
        finally:
            srv.close()
    out["ratio_vs_single_same_server"] = out["aggregate_tok_s"] / out["server_tok_s"]
    out["ratio_vs_single_parallel_1"] = out["aggregate_tok_s"] / out["single_on_parallel_1_tok_s"]
    out["ratio_no_batch_vs_single_parallel_1"] = (out["aggregate_tok_s_no_batch"]
                                                  / out["single_on_parallel_1_tok_s"])
    out["loadavg"] = loadavg()
    return out


def bench_json(model: str, n_requests: int) -> dict[str, Any]:
    import jsonschema
    import openai
    srv = ServerProcess(model, 2, 0, 1024, "auto")
    ok = 0
    failures: list[str] = []
    t0 = time.perf_counter()
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=600)
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
        for i in range(n_requests):
            topic = JSON_TOPICS[i % len(JSON_TOPICS)]
            r = client.chat.completions.create(
                model="m", temperature=0.7, seed=i + 1, max_tokens=200, response_format=fmt,
                messages=[{"role": "user", "content": f"Invent {topic} and describe them as JSON."}])
            text = r.choices[0].message.content
            try:
                jsonschema.validate(json.loads(text), SCHEMA)
                ok += 1
            except (json.JSONDecodeError, jsonschema.ValidationError) as e:
                failures.append(f"{r.choices[0].finish_reason}: {text[:120]!r}: {e}"[:300])
    finally:
        srv.close()
    wall = time.perf_counter() - t0
    return {"requests": n_requests, "valid": ok, "failures": failures[:5], "wall_s": wall,
            "mask_share": mask_share(model), "loadavg": loadavg()}


def mask_share(model: str, n_requests: int = 10) -> dict[str, Any]:
    """In process: time spent computing and advancing the grammar mask vs decode time."""
    from edgert import LLM
    from edgert import structured
    spent = [0.0]
    orig_mask, orig_accept = structured.Constraint.mask, structured.Constraint.accept

    def timed(fn: Any) -> Any:
        def wrapper(self: Any, *a: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(self, *a)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper
    structured.Constraint.mask = timed(orig_mask)  # type: ignore[method-assign]
    structured.Constraint.accept = timed(orig_accept)  # type: ignore[method-assign]
    tokens, decode_s = 0, 0.0
    try:
        with LLM(model, n_ctx=1024) as llm:
            fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
            llm.chat([{"role": "user", "content": "x"}], max_tokens=4, response_format=fmt)
            spent[0] = 0.0
            for i in range(n_requests):
                llm.chat([{"role": "user", "content": f"Invent {JSON_TOPICS[i]} as JSON."}],
                         max_tokens=200, temperature=0.7, seed=i, response_format=fmt)
                tokens += llm.last_timings.n_generated
                decode_s += llm.last_timings.decode_s
    finally:
        structured.Constraint.mask, structured.Constraint.accept = orig_mask, orig_accept
    return {"tokens": tokens, "mask_ms_per_token": spent[0] / tokens * 1e3,
            "decode_ms_per_token": decode_s / tokens * 1e3, "share": spent[0] / decode_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--only", default="overhead,concurrency,json")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--json-requests", type=int, default=100)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    only = set(args.only.split(","))
    res: dict[str, Any] = {"model": os.path.basename(args.model)}
    if "overhead" in only:
        r = res["overhead"] = bench_overhead(args.model, args.n_gen, args.rounds, args.threads)
        print(f"overhead     {r['n_tokens']} tokens: in process {r['in_process_s']:.3f} s, HTTP "
              f"{r['http_s']:.3f} s -> {r['ratio']:.3f}x; CPU in process {r['in_process_cpu_s']:.3f} s, "
              f"server + client {r['http_cpu_s']:.3f} s -> {r['cpu_ratio']:.3f}x (medians of "
              f"{r['rounds']}; load {r['loadavg']})")
    if "concurrency" in only:
        r = res["concurrency"] = bench_concurrency(args.model, args.n_gen // 2, args.parallel,
                                                   args.clients)
        print(f"concurrency  {r['clients']} clients on --parallel {r['parallel']}: aggregate "
              f"{r['aggregate_tok_s']:.1f} tok/s vs one client {r['server_tok_s']:.1f} tok/s "
              f"({r['ratio_vs_single_same_server']:.2f}x; vs --parallel 1 "
              f"{r['single_on_parallel_1_tok_s']:.1f} tok/s: {r['ratio_vs_single_parallel_1']:.2f}x), "
              f"answers correct: {r['all_correct']}; with --no-batch aggregate "
              f"{r['aggregate_tok_s_no_batch']:.1f} tok/s "
              f"({r['ratio_no_batch_vs_single_parallel_1']:.2f}x), correct: "
              f"{r['all_correct_no_batch']} (load {r['loadavg']})")
    if "json" in only:
        r = res["json"] = bench_json(args.model, args.json_requests)
        m = r["mask_share"]
        print(f"json         {r['valid']}/{r['requests']} outputs parse and validate; mask "
              f"{m['mask_ms_per_token']:.3f} ms/token = {m['share'] * 100:.1f}% of decode "
              f"({m['decode_ms_per_token']:.1f} ms/token) (load {r['loadavg']})")
        for f in r["failures"]:
            print("   failed:", f)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
