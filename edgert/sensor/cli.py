"""`edgert sensor run|bench|compile`: the sensor path from the command line.

  edgert sensor run MODEL.onnx --window 128 --hop 32 < samples.csv     one line per window
  edgert sensor bench MODEL.onnx                                       latency vs onnxruntime
  edgert sensor compile MODEL.onnx --target aarch64-linux-gnu -o DIR   AOT object/library/header

samples.csv: one sample per line, one column per channel (comma or whitespace separated, '#'
comments). The module imports nothing heavy, so without the extra `edgert sensor` still starts and
says what to install; `run` on a cached model (or an AOT MODEL.so) needs neither the extra nor
numpy (the CSV is parsed into array.array blocks, the outputs printed from memoryviews).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from array import array
from itertools import chain
from typing import Any, Iterator, Optional, TextIO

from ..errors import EdgertError

EXTRA_HINT = 'edgert sensor needs the sensor extra: pip install "edgert[sensor]"'


def _require_extra(need: tuple[str, ...] = ("onnx", "llvmlite")) -> None:
    missing = []
    for m in need:
        try:
            if importlib.util.find_spec(m) is None:
                missing.append(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise EdgertError(f"{EXTRA_HINT} (missing: {', '.join(missing)})")


def _floats(text: Optional[str]) -> Optional[list[float]]:
    return None if text is None else [float(v) for v in text.replace(",", " ").split()]


def _shapes(items: list[str]) -> Optional[dict[str, list[int]]]:
    if not items:
        return None
    out = {}
    for it in items:
        name, _, dims = it.partition("=")
        out[name] = [int(d) for d in dims.replace("x", ",").split(",") if d]
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sensor_command", metavar="SUBCOMMAND", required=True)
    r = sub.add_parser("run", help="stream samples from stdin (CSV) through the model, one "
                                   "output line per window")
    _common(r)
    r.add_argument("--window", type=int, required=True, help="samples per window")
    r.add_argument("--hop", type=int, required=True, help="samples between window starts")
    r.add_argument("--channels", type=int, default=None, help="columns per line (default: "
                   "from the model's input shape)")
    r.add_argument("--mean", default=None, help="per-channel mean, comma separated")
    r.add_argument("--std", default=None, help="per-channel std, comma separated")
    r.add_argument("--spectrum", action="store_true",
                   help="feed the model each channel's Hann-windowed magnitude spectrum")
    r.add_argument("--layout", choices=["cw", "wc"], default=None,
                   help="cw: [channels, time], wc: [time, channels] (default: from the shape)")
    r.add_argument("--argmax", action="store_true", help="print the index of the largest output")
    b = sub.add_parser("bench", help="per-call latency percentiles against onnxruntime")
    _common(b)
    b.add_argument("--iters", type=int, default=2000, help="timed calls per engine")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    c = sub.add_parser("compile", help="compile ahead of time (another target: .o/.so/.h)")
    _common(c)
    c.add_argument("--target", default="host",
                   help="host, aarch64-linux-gnu or aarch64-linux-gnu+dotprod (SDOT int8 GEMMs "
                        "for armv8.2-a+dotprod boards)")
    c.add_argument("-o", "--output-dir", default=None, help="where an AOT compile writes")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file (run: or an AOT library MODEL.so for this "
                                 "machine, its MODEL.json beside it)")
    p.add_argument("--dtype", default="f32", choices=["f32", "int8"])
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="pin a symbolic input dim (repeatable)")
    p.add_argument("--fallback", action="store_true",
                   help="run in onnxruntime when the compiler refuses the model")


def run(args: argparse.Namespace) -> int:
    if args.sensor_command != "run":  # run checks the extra only when it has to compile
        _require_extra()
    return {"run": cmd_run, "bench": cmd_bench, "compile": cmd_compile}[args.sensor_command](args)


def _compile(args: argparse.Namespace, **kw: Any) -> Any:
    from . import compile as sensor_compile
    return sensor_compile(args.model, dtype=args.dtype, input_shapes=_shapes(args.input_shape),
                          fallback="onnxruntime" if args.fallback else None, **kw)


def read_samples(src: Any, channels: int, block: int = 1 << 16) -> Iterator[array]:
    """Yield array('f') chunks of whole lines (channels interleaved) parsed from blocks of CSV
    lines read from the binary stream `src`. Read as numpy.loadtxt did (commas or whitespace
    between columns, '#' starts a comment, blank lines skipped), without numpy: a board running a
    cached model need not have it."""
    rest = b""
    line = 1  # the number of the block's first line, for error messages
    while True:
        data = src.read(block)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1:]
        yield _parse(data[:cut + 1], channels, line)
        line += data.count(b"\n", 0, cut + 1)
    if rest.strip():
        yield _parse(rest, channels, line)


# What a number may be made of (float() also reads inf, infinity and nan). Deleting these bytes
# from a block of plain CSV leaves its separators: "," * (channels - 1) + "\n" per line.
_NUMBER_BYTES = b"0123456789.+-eEinfatyINFATY"


def _parse(chunk: bytes, channels: int, first_line: int) -> array:
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    try:
        text = chunk.decode("ascii")
    except UnicodeDecodeError as e:
        line = first_line + chunk.count(b"\n", 0, e.start)
        raise EdgertError(f"line {line}: a byte that is "
                          f"not ASCII text (0x{chunk[e.start]:02x}); samples.csv holds numbers, "
                          f"one line per sample") from None
    # Fast path, C loops only: every line is `channels` comma-separated numbers (no spaces,
    # comments or blank lines), so one split() over the block is the parse.
    seps = chunk.translate(None, _NUMBER_BYTES)
    n = seps.count(b"\n")
    if seps == (b"," * (channels - 1) + b"\n") * n:
        tokens = (text.replace(",", " ") if channels > 1 else text).split()
        if len(tokens) == n * channels:  # else an empty field: the line-by-line parser names it
            try:
                return array("f", map(float, tokens))
            except ValueError:
                pass  # the line-by-line parser below names the line
    # Line by line: drop comments, split each line, check its column count, then convert every
    # number of the block in one call.
    text = text.replace(",", " ")
    if "#" in text:
        text = "\n".join(ln.partition("#")[0] for ln in text.split("\n"))
    rows = list(map(str.split, text.split("\n")))
    counts = set(map(len, rows))
    counts.discard(0)
    if counts - {channels}:
        i, n = next((i, len(r)) for i, r in enumerate(rows) if len(r) not in (0, channels))
        raise EdgertError(f"line {first_line + i}: a line has {n} column(s); the model takes "
                          f"{channels} channel(s) (set --channels)")
    try:
        if "_" in text:  # float() reads 1_000 as 1000; a CSV reader must not
            raise ValueError
        return array("f", map(float, chain.from_iterable(rows)))
    except ValueError:
        for i, r in enumerate(rows):
            for v in r:
                try:
                    if "_" in v:
                        raise ValueError
                    float(v)
                except ValueError:
                    raise EdgertError(f"line {first_line + i}: {v!r} is not a number") from None
        raise


def _argmax(row: list[float]) -> int:
    """numpy's argmax: the first NaN if there is one, else the first largest value."""
    for i, v in enumerate(row):
        if v != v:
            return i
    return row.index(max(row))


def cmd_run(args: argparse.Namespace) -> int:
    from .stream import WindowStream
    m = _load_or_compile(args)
    s = WindowStream(m, args.window, args.hop, channels=args.channels, mean=_floats(args.mean),
                     std=_floats(args.std), spectrum=args.spectrum, layout=args.layout)
    ch = _channels_of(m, args)
    out: TextIO = sys.stdout
    fmt = ""
    for chunk in read_samples(sys.stdin.buffer, ch):
        if not chunk:
            continue
        rows = s.push(chunk).tolist()  # a memoryview [k, outputs]: array.array in
        if not rows:
            continue
        if args.argmax:
            out.write("".join(f"{_argmax(r)}\n" for r in rows))
        else:
            # what np.savetxt(fmt="%.6g", delimiter=",") wrote: one "%.6g" per value
            fmt = fmt or ",".join(["%.6g"] * len(rows[0])) + "\n"
            out.write("".join(map(fmt.__mod__, map(tuple, rows))))
        out.flush()
    return 0


def _load_or_compile(args: argparse.Namespace) -> Any:
    """An AOT library (MODEL.so with its .json, from `compile --target`) or the cached model when
    there is one (no onnx, llvmlite or numpy needed), else a compile, which needs the extra."""
    from .compiler import cached, load
    if args.model.endswith(".so"):
        return load(args.model)
    m = cached(args.model, dtype=args.dtype, input_shapes=_shapes(args.input_shape))
    if m is not None:  # only a model that compiled is cached, so --fallback does not matter
        return m
    _require_extra()
    return _compile(args)


def _channels_of(m: Any, args: argparse.Namespace) -> int:
    from .stream import infer_layout
    return infer_layout(m.input_shapes[0], args.window, args.spectrum, args.channels)[0]


def latency_percentiles(samples_ns: list[int]) -> dict[str, float]:
    import numpy as np
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"p50_us": float(np.percentile(a, 50)), "p90_us": float(np.percentile(a, 90)),
            "p99_us": float(np.percentile(a, 99)), "mean_us": float(a.mean())}


def time_calls(fn: Any, args: tuple, iters: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(iters):
        t = clock()
        fn(*args)
        out.append(clock() - t)
    return out


def ort_session(path: str, input_shapes: Optional[dict] = None) -> Any:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_interleaved(engines: dict[str, tuple[Any, tuple]], iters: int, blocks: int = 5,
                     warmup: int = 200) -> dict[str, dict[str, float]]:
    """Per-call latency of each engine's fn(*args) (name -> (fn, args)), timed in `blocks`
    interleaved blocks of iters // blocks calls each, so load changes hit every engine alike:
    wall-clock percentiles, and thread CPU time per call (best block: what the call costs when the
    machine is shared and the wall clock also counts time the thread waited for a core)."""
    for _ in range(min(warmup, iters)):
        for fn, args in engines.values():
            fn(*args)
    samples: dict[str, list[int]] = {k: [] for k in engines}
    cpu: dict[str, list[float]] = {k: [] for k in engines}
    per = max(1, iters // blocks)
    for _ in range(blocks):
        for k, (fn, args) in engines.items():
            t = time.thread_time_ns()
            samples[k] += time_calls(fn, args, per)
            cpu[k].append((time.thread_time_ns() - t) / per / 1e3)
    out = {}
    for k in engines:
        out[k] = latency_percentiles(samples[k])
        out[k]["cpu_us"] = min(cpu[k])
    return out


def bench_model(path: str, iters: int = 2000, dtype: str = "f32",
                input_shapes: Optional[dict] = None, blocks: int = 5) -> dict[str, Any]:
    """Per-call latency of the compiled model and of onnxruntime's InferenceSession.run, batch 1,
    one thread, timed in interleaved blocks (time_interleaved)."""
    import numpy as np
    from . import compile as sensor_compile
    t0 = time.perf_counter()
    m = sensor_compile(path, dtype=dtype, input_shapes=input_shapes)
    compile_s = time.perf_counter() - t0
    sess = ort_session(path)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in m.input_shapes]
    feeds = {n: x for n, x in zip(m.input_names, xs)}
    t = time_interleaved({"edgert": (m, tuple(xs)), "onnxruntime": (sess.run, (None, feeds))},
                         iters, blocks)
    a, b = t["edgert"], t["onnxruntime"]
    return {"model": path, "compile_s": compile_s, "cache_hit": m.info.cache_hit,
            "loader": m.info.loader, "edgert": a, "onnxruntime": b,
            "ratio_p50": a["p50_us"] / b["p50_us"], "ratio_p99": a["p99_us"] / b["p99_us"],
            "ratio_cpu": a["cpu_us"] / b["cpu_us"]}


def cmd_bench(args: argparse.Namespace) -> int:
    _require_extra(("onnx", "llvmlite", "onnxruntime"))
    r = bench_model(args.model, args.iters, args.dtype, _shapes(args.input_shape))
    try:
        with open("/proc/loadavg") as f:
            r["loadavg"] = f.read().split()[:3]
    except OSError:
        pass
    if args.json:
        json.dump(r, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    e, o = r["edgert"], r["onnxruntime"]
    print(f"model        {r['model']} ({'cached' if r['cache_hit'] else 'compiled'} in "
          f"{r['compile_s'] * 1e3:.0f} ms, {r['loader']})")
    print(f"{'':12} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9}")
    print(f"{'edgert':12} {e['p50_us']:9.2f} {e['p90_us']:9.2f} {e['p99_us']:9.2f}")
    print(f"{'onnxruntime':12} {o['p50_us']:9.2f} {o['p90_us']:9.2f} {o['p99_us']:9.2f}")
    print(f"cpu/call     edgert {e['cpu_us']:.2f} us, onnxruntime {o['cpu_us']:.2f} us "
          f"({r['ratio_cpu']:.3f}x, thread CPU time)")
    print(f"ratio        p50 {r['ratio_p50']:.3f}x, p99 {r['ratio_p99']:.3f}x of onnxruntime "
          f"(batch 1, 1 thread; loadavg {' '.join(r.get('loadavg', []))})")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    if args.target == "host":
        m = _compile(args)
        print(f"compiled {args.model}: {m.input_shapes} -> {m.output_shapes}, "
              f"{m.info.loader}, cache {m.info.path}")
        return 0
    art = _compile(args, target=args.target, output_dir=args.output_dir or ".")
    print(f"{art.target}: {art.object} {art.header}" + (f" {art.library}" if art.library else ""))
    return 0
