"""Throughput of the `edgert sensor run` command (CSV on stdin -> one line per window on stdout).

    python benchmarks/sensor_cli_bench.py                       # MLP example, 200k samples, 5 runs
    python benchmarks/sensor_cli_bench.py --samples 1000000 --repeats 3 --model M.onnx --channels 3

Writes a CSV of Gaussian samples (`%.6f`, one column per channel), compiles the model once into a
fresh cache (so every timed run is a cached start, like a board's), then times the whole command
in fresh processes: start, cached load, CSV parsing, WindowStream -> model, printing. Reports
the median wall time, samples/s, whether the command imported numpy, and /proc/loadavg. The
CSV parsing dominates: the library path alone streams ~27 M samples/s (README).

Then, in this process and interleaved (so load changes hit both alike), the command's loop as it
is (edgert.sensor.cli.read_samples -> WindowStream.push(array) -> "%.6g" lines) against the numpy
loop it replaced (np.loadtxt per 64 KiB block -> push(ndarray) -> np.savetxt): CPU time (thread
time, best of --repeats) and whether the two print the same bytes.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLP = "/work/bench-cache/sensor-models/mlp_anomaly.onnx"  # examples/sensor/train.py's MLP


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=MLP, help="an .onnx file (default: %(default)s)")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--hop", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--argmax", action="store_true")
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("edgert"))
    with tempfile.TemporaryDirectory(prefix="edgert-sensor-cli-bench-") as tmp:
        rng = random.Random(0)
        csv = Path(tmp) / "samples.csv"
        with open(csv, "w") as f:
            for _ in range(args.samples):
                f.write(",".join(f"{rng.gauss(0, 1):.6f}" for _ in range(args.channels)) + "\n")
        env = dict(os.environ, EDGERT_SENSOR_CACHE=str(Path(tmp) / "cache"))
        cmd = [exe, "sensor", "run", args.model, "--window", str(args.window), "--hop",
               str(args.hop)] + (["--argmax"] if args.argmax else [])
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                       check=True)  # compile into the cache
        # does the command import numpy? (-X importtime lists every import on stderr)
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgert"] + cmd[1:],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           cwd=tmp)
        numpy_in = any(ln.split("|")[-1].strip() == "numpy" for ln in r.stderr.splitlines())
        t = time.perf_counter()
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                       check=True)
        start = time.perf_counter() - t
        la0 = loadavg()
        times = []
        lines = 0
        for _ in range(args.repeats):
            with open(csv, "rb") as fin:
                t = time.perf_counter()
                out = subprocess.run(cmd, stdin=fin, capture_output=True, env=env, check=True)
                times.append(time.perf_counter() - t)
            lines = out.stdout.count(b"\n")
        med = statistics.median(times)
        print(f"edgert sensor run {Path(args.model).name} --window {args.window} --hop {args.hop}"
              f": {args.samples} samples x {args.channels} ch -> {lines} lines; median "
              f"{med * 1e3:.0f} ms of {args.repeats} (min {min(times) * 1e3:.0f}, max "
              f"{max(times) * 1e3:.0f}) = {args.samples / med:,.0f} samples/s; imports numpy: "
              f"{numpy_in}; empty input {start * 1e3:.0f} ms; loadavg {la0} -> {loadavg()}")
        print(inprocess(args, csv, env))
    return 0


def _numpy_loop(model, args, data: bytes) -> str:
    """The loop `edgert sensor run` had before it went numpy-free (its text, minus argmax)."""
    import numpy as np
    from edgert import sensor
    s = sensor.WindowStream(model, args.window, args.hop)
    out = io.StringIO()
    rest, block = b"", 1 << 16
    for i in range(0, len(data), block):
        d = rest + data[i:i + block]
        cut = d.rfind(b"\n")
        rest = d[cut + 1:]
        arr = np.loadtxt(io.BytesIO(d[:cut + 1].replace(b",", b" ")), dtype=np.float32,
                         ndmin=2, comments="#")
        res = s.push(arr)
        if len(res):
            np.savetxt(out, res, fmt="%.6g", delimiter=",")
    return out.getvalue()


def _python_loop(model, args, data: bytes) -> str:
    from edgert import sensor
    from edgert.sensor.cli import read_samples
    s = sensor.WindowStream(model, args.window, args.hop)
    out = io.StringIO()
    fmt = ""
    for chunk in read_samples(io.BytesIO(data), args.channels):
        rows = s.push(chunk).tolist()
        if rows:
            fmt = fmt or ",".join(["%.6g"] * len(rows[0])) + "\n"
            out.write("".join(map(fmt.__mod__, map(tuple, rows))))
    return out.getvalue()


def inprocess(args, csv: Path, env: dict) -> str:
    os.environ["EDGERT_SENSOR_CACHE"] = env["EDGERT_SENSOR_CACHE"]
    from edgert import sensor
    m = sensor.compile(args.model)
    data = csv.read_bytes()
    best = {"numpy": 1e9, "python": 1e9}
    texts = {}
    for _ in range(args.repeats):
        for name, fn in (("numpy", _numpy_loop), ("python", _python_loop)):
            t = time.thread_time()
            texts[name] = fn(m, args, data)
            best[name] = min(best[name], time.thread_time() - t)
    return (f"in-process loop, CPU s (best of {args.repeats}): numpy (before) "
            f"{best['numpy']:.3f} s = {args.samples / best['numpy']:,.0f} samples/s, python "
            f"(now) {best['python']:.3f} s = {args.samples / best['python']:,.0f} samples/s, "
            f"ratio {best['python'] / best['numpy']:.2f}x; same output: "
            f"{texts['numpy'] == texts['python']}; loadavg {loadavg()}")


if __name__ == "__main__":
    sys.exit(main())
