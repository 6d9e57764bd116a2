"""Sensor path benchmark (issue 14): edgert.sensor against onnxruntime on five small models.

    python benchmarks/sensor_bench.py                 # ~3 min on 2 quiet cores, every part
    python benchmarks/sensor_bench.py --quick         # smoke run (fewer calls)
    python benchmarks/sensor_bench.py --only rss      # one part: latency,compile,rss,streaming,int8
    python benchmarks/sensor_bench.py --only int8     # edgert int8 vs onnxruntime, same QDQ model

Models: the three of examples/sensor (MLP anomaly detector, 1-D CNN, GRU; trained and exported
once into --models) and two generated model-zoo shapes, exported from PyTorch with random weights
and batch-norm statistics: a MobileNet-like CNN on 1x3x32x32 (depthwise-separable blocks, ReLU6)
and a keyword-spotting DS-CNN on 1x1x49x10 (MFCC frames x coefficients).

Measured, per model, in one run (medians; loadavg recorded at start and end):
  latency     per call, batch 1, one thread: `m(x)` vs `InferenceSession.run`, timed in interleaved
              blocks; p50 and p99 (wall clock) and thread CPU time per call (the fair figure on
              a shared machine); target p50 ratio <= 0.2
  compile     cold compile() wall time in a fresh process with an empty cache, imports done
              first (target <= 1 s); `import` time reported apart
  cached      compile() on a warm cache in a fresh process (target <= 50 ms), and with the
              `import edgert.sensor` it needs
  peak RSS    VmHWM of a script that loads the model and runs 2000 calls (target ratio <= 0.5 of
              onnxruntime's script, which needs numpy): edgert in two scripts, one with numpy
              arrays and one numpy-free (array.array in, memoryview out), both loading the
              model from the cache like a deployed script; and each engine's share above the
              same script without one
  streaming   samples/s through WindowStream -> MLP (window 128, hop 32, one thread; target
              >= 100,000)
  roofline    each model's FLOPs (2 x the multiply-adds of Conv, Gemm/MatMul and the GRU/LSTM
              matrix products, counted from the ONNX graph; elementwise work left out), one
              core's peak f32 FMA rate (fmapeak.c, thread CPU time), and the GFLOP/s each engine
              achieves at its p50 and at its CPU time per call: how close each is to the hardware
  int8        each model quantized by onnxruntime.quantization.quantize_static (QDQ, per-channel
              int8 weights, int8 activations, MinMax calibration on 32 generated inputs of another
              seed than the timed ones) and compiled with compile(qdq, dtype="int8"); p50/p99 and
              thread CPU time per call against InferenceSession(qdq) (the same int8 model) and
              InferenceSession(f32 model), with edgert's f32 compile, all four interleaved (calls
              capped to ~8 s per model); agreement with onnxruntime's QDQ outputs on 64 other inputs
              in units of the output's quantization step (max |y - y_ort| / scale); the int8 ops
              run (`ops`: QLinearConv/QLinearMatMul/QGemm are integer; a Gemm the int8 rewrite
              cannot take stays a float op between Q/DQ rounding steps). A model that fails to
              compile in int8 is recorded with its error message (`error`, `error_typed`), not
              raised. Int8 roofline: one core's peak int8 rate (vnnipeak.c: vpdpbusd, u8 x s8 ->
              s32 dot products; an s8 x s8 kernel
              needs a zero-point shift on top) and the GOP/s that 0.2x onnxruntime-QDQ's CPU
              time needs, over the model's FLOPs (which count Gemm and GRU work even where it
              stays float). Part of the default run (it adds ~25 s); --int8-activations uint8
              quantizes activations to uint8 (U8S8) instead
Writes benchmarks/results/sensor-<date>-<host>.json and prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "examples" / "sensor"))


def loadavg() -> list[float]:
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


# -- generated zoo-shaped models ------------------------------------------------------------------

def _random_bn(torch: Any, model: Any) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def mobilenet_like(torch: Any) -> Any:
    nn = torch.nn

    def dw_sep(cin: int, cout: int, stride: int) -> list[Any]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.ReLU6(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]
    layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()]
    for cin, cout, s in [(16, 24, 1), (24, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]:
        layers += dw_sep(cin, cout, s)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def ds_cnn(torch: Any) -> Any:
    """The DS-CNN (small) of 'Hello Edge' (Zhang et al. 2017) for 49 MFCC frames x 10 coeffs."""
    nn = torch.nn
    layers = [nn.Conv2d(1, 64, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    for _ in range(4):
        layers += [nn.Conv2d(64, 64, 3, 1, 1, groups=64, bias=False), nn.BatchNorm2d(64),
                   nn.ReLU(), nn.Conv2d(64, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12)]
    return nn.Sequential(*layers)


def make_models(out: Path) -> dict[str, dict[str, Any]]:
    """All five models (cached in `out`): name -> {path, input shape, ...}."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / "models.json"
    if index.exists():
        models = json.loads(index.read_text())
        if all(Path(m["path"]).exists() for m in models.values()):
            return models
    import train
    examples = train.train_all(out)
    models = {e.name: {"path": e.path, "window": e.window, "hop": e.hop, "mean": e.mean,
                       "std": e.std, "example": True} for e in examples}
    torch = train._torch()
    for name, build, shape in (("mobilenet_32x32", mobilenet_like, (1, 3, 32, 32)),
                               ("ds_cnn_kws_49x10", ds_cnn, (1, 1, 49, 10))):
        model = build(torch).eval()
        _random_bn(torch, model)
        path = out / f"{name}.onnx"
        train._export(torch, model, torch.randn(*shape).numpy(), path)
        models[name] = {"path": str(path), "example": False}
    index.write_text(json.dumps(models, indent=1))
    return models


# -- roofline: FLOPs per model, one core's peak -------------------------------------------------------

def model_flops(path: str) -> dict[str, Any]:
    """2 x multiply-adds of the model's matrix work (Conv, Gemm, MatMul, GRU, LSTM), read from the
    ONNX graph with onnx's shape inference; per op type and in total."""
    import numpy as np
    import onnx
    import onnx.shape_inference
    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = m.graph

    def dims(vi: Any) -> list[int]:
        return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    shapes = {vi.name: dims(vi) for vi in list(g.value_info) + list(g.input) + list(g.output)}
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    per_op: dict[str, int] = {}
    for n in g.node:
        macs = 0
        if n.op_type == "Conv":
            w, y = shapes[n.input[1]], shapes[n.output[0]]
            macs = int(np.prod(y)) * int(np.prod(w[1:]))        # out elements x (Cin/g x kernel)
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes[n.input[0]], shapes[n.output[0]]
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            k = a[-2] if trans_a and len(a) >= 2 else a[-1]
            macs = int(np.prod(y)) * k
        elif n.op_type in ("GRU", "LSTM"):
            x, r = shapes[n.input[0]], shapes[n.input[2]]        # X [T, B, I], R [D, G*H, H]
            t, b, i = x
            gh, h = r[1], r[2]
            macs = r[0] * t * b * gh * (i + h)
        if macs:
            per_op[n.op_type] = per_op.get(n.op_type, 0) + 2 * macs
    return {"flops": sum(per_op.values()), "by_op": per_op}


def _peak_probe(name: str) -> dict[str, Any]:
    """Build benchmarks/<name>.c with -march=native and run it (best of 5); {} with no cc."""
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return {}
    exe = Path(tempfile.gettempdir()) / f"edgert-{name}"
    src = HERE / f"{name}.c"
    subprocess.run([cc, "-O2", "-march=native", "-ffp-contract=fast", "-o", str(exe), str(src)],
                   check=True)
    return json.loads(subprocess.run([str(exe), "5"], capture_output=True, text=True,
                                     check=True).stdout)


def core_peak_gflops() -> dict[str, Any]:
    """One core's peak f32 FMA GFLOP/s (fmapeak.c built with -march=native), or {} with no cc."""
    out = _peak_probe("fmapeak")
    if out:
        out["method"] = "fmapeak.c: 16 independent vector FMA chains, thread CPU time, best of 5"
    return out


def core_peak_int8_gops() -> dict[str, Any]:
    """One core's peak int8 GOP/s (vnnipeak.c: vpdpbusd, u8 x s8 -> s32), or {} with no cc;
    best_gops is None where the compiler targets no VNNI."""
    out = _peak_probe("vnnipeak")
    if out:
        out["method"] = ("vnnipeak.c: 16 independent vpdpbusd chains (4 multiply-adds per 32-bit "
                         "lane), thread CPU time, best of 5")
    return out


# -- measurements in fresh processes ---------------------------------------------------------------

_COMPILE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy
from edgert import sensor
t1 = time.perf_counter()
cold = sys.argv[2] == "cold"
if cold:
    import onnx, llvmlite.binding  # imports are not the compiler's work: do them first
t2 = time.perf_counter()
m = sensor.compile(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "compile_s": t3 - t2, "cache_hit": m.info.cache_hit}))
"""

_RSS_SCRIPT = r"""
import sys
engine, path = sys.argv[1], sys.argv[2]
if engine == "baseline":  # the numpy script without an engine: Python, numpy, the inputs
    import numpy as np
    x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    run = lambda: None
elif engine == "baseline-nonumpy":  # the numpy-free script without an engine
    import array, random
    x = array.array("f", [random.Random(0).gauss(0, 1) for _ in range(16)])
    run = lambda: None
elif engine == "edgert":  # numpy arrays in and out
    import numpy as np
    from edgert import sensor
    m = sensor.compile(path)
    assert m.info.cache_hit, "the parent compiles the model first: a deployed script hits the cache"
    x = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in m.input_shapes]
    run = lambda: m(*x)
elif engine == "edgert-nonumpy":  # array.array in, memoryview out: numpy never imported
    import array, random
    from edgert import sensor
    m = sensor.compile(path)
    assert m.info.cache_hit, "the parent compiles the model first: a deployed script hits the cache"
    rnd = random.Random(0)
    x = [array.array("f", [rnd.gauss(0, 1) for _ in range(n)]) for n in m.input_sizes]
    run = lambda: m(*x)
else:
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
             for i in s.get_inputs()}
    run = lambda: s.run(None, feeds)
for _ in range(2000):
    run()
if engine.endswith("-nonumpy"):
    assert "numpy" not in sys.modules, "the numpy-free script imported numpy"
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024.0)
"""


def _py(script: str, *args: str, env: dict[str, str]) -> str:
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and the checkout's
    # edgert/ has no compiled modules
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                       env=env, timeout=600, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return r.stdout.strip().splitlines()[-1]


def compile_times(path: str, repeats: int) -> dict[str, Any]:
    import statistics
    cold, cached, imp = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, EDGERT_SENSOR_CACHE=cache)
            c = json.loads(_py(_COMPILE_SCRIPT, path, "cold", env=env))
            w = json.loads(_py(_COMPILE_SCRIPT, path, "warm", env=env))
            assert not c["cache_hit"] and w["cache_hit"]
            cold.append(c["compile_s"])
            cached.append(w["compile_s"])
            imp.append(w["import_s"])
    return {"compile_s": statistics.median(cold), "cached_s": statistics.median(cached),
            "cached_with_import_s": statistics.median([a + b for a, b in zip(cached, imp)])}


def peak_rss(path: str, env: dict[str, str]) -> dict[str, float]:
    """VmHWM of the scripts in _RSS_SCRIPT. The model is compiled here first, so the edgert
    scripts load it from the cache like a deployed script; onnxruntime's API needs numpy, so its
    script imports numpy, and the two edgert scripts are each compared with it."""
    from edgert import sensor
    sensor.compile(path)  # into env's EDGERT_SENSOR_CACHE (the bench sets os.environ's)
    e = float(_py(_RSS_SCRIPT, "edgert", path, env=env))
    n = float(_py(_RSS_SCRIPT, "edgert-nonumpy", path, env=env))
    o = float(_py(_RSS_SCRIPT, "onnxruntime", path, env=env))
    base = float(_py(_RSS_SCRIPT, "baseline", path, env=env))
    base_n = float(_py(_RSS_SCRIPT, "baseline-nonumpy", path, env=env))
    return {"edgert_mb": e, "onnxruntime_mb": o, "baseline_mb": base, "ratio": e / o,
            "engine_ratio": (e - base) / max(o - base, 1e-9),
            "edgert_nonumpy_mb": n, "baseline_nonumpy_mb": base_n, "ratio_nonumpy": n / o,
            "engine_nonumpy_mb": n - base_n}


def streaming_rate(info: dict[str, Any], seconds: float) -> dict[str, Any]:
    import numpy as np
    from edgert import sensor
    m = sensor.compile(info["path"])
    s = sensor.WindowStream(m, info["window"], info["hop"], mean=info["mean"], std=info["std"])
    sig = np.random.default_rng(0).standard_normal((200_000, 1)).astype(np.float32)
    n = 0
    windows = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(sig), 1000):
            windows += len(s.push(sig[i:i + 1000]))
        n += len(sig)
    dt = time.perf_counter() - t0
    return {"samples_per_s": n / dt, "windows_per_s": windows / dt, "window": info["window"],
            "hop": info["hop"]}


# -- int8: edgert's dtype="int8" against onnxruntime on the same QDQ model ------------------------

CALIB_SEED, AGREE_SEED = 20261203, 7   # the timing inputs use seed 0 (cli.bench_model's)


def quant_settings(activations: str = "int8") -> dict[str, Any]:
    """What quantize_qdq asks onnxruntime.quantization for (recorded in the results)."""
    return {"format": "QDQ", "per_channel": True,
            "activation_type": "QInt8" if activations == "int8" else "QUInt8",
            "weight_type": "QInt8", "calibrate_method": "MinMax", "calibration_inputs": 32,
            "calibration": "standard normal inputs of the model's input shapes, "
                           f"seed {CALIB_SEED} (not the timing or agreement inputs)"}


def _input_shapes(path: str) -> dict[str, list[int]]:
    import onnx
    g = onnx.load(path).graph
    inits = {t.name for t in g.initializer}
    return {i.name: [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
            for i in g.input if i.name not in inits}


def quantize_qdq(path: str, out: Path, activations: str = "int8") -> Path:
    """onnxruntime.quantization.quantize_static in QDQ format with per-channel int8 weights (what
    edgert/sensor/quant.py maps to QLinearConv / QLinearMatMul / QGemm: per-channel weight scales
    and zero points, one activation scale), calibrated with MinMax on generated inputs
    (quant_settings); activations int8 (onnxruntime's default, S8S8) or uint8 (U8S8)."""
    import logging
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    shapes = _input_shapes(path)
    n_calib = quant_settings()["calibration_inputs"]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(CALIB_SEED)
            self.it = iter([{k: rng.standard_normal(s).astype(np.float32)
                             for k, s in shapes.items()}
                            for _ in range(n_calib)])

        def get_next(self) -> Any:
            return next(self.it, None)
    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice, per model
    qpath = out / (Path(path).stem + ".qdq.onnx")
    act = QuantType.QInt8 if activations == "int8" else QuantType.QUInt8
    quantize_static(path, str(qpath), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=act, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return qpath


def _output_steps(qpath: Path) -> dict[str, float]:
    """Graph output -> its quantization step, where a DequantizeLinear with one constant scale
    produces it (onnxruntime's QDQ models end so)."""
    import onnx
    import onnx.numpy_helper
    g = onnx.load(str(qpath)).graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    prod = {o: n for n in g.node for o in n.output}
    steps = {}
    for o in g.output:
        n = prod.get(o.name)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in consts \
                and consts[n.input[1]].size == 1:
            steps[o.name] = float(consts[n.input[1]].reshape(-1)[0])
    return steps


def int8_compare(info: dict[str, Any], iters: int, out: Path, seconds: float = 8.0,
                 activations: str = "int8", peak_gops: Optional[float] = None) -> dict[str, Any]:
    """edgert.sensor.compile(qdq, dtype="int8") against InferenceSession(qdq) (the same int8 model)
    and InferenceSession(f32 model), plus edgert's f32 compile of the f32 model, timed interleaved
    with cli.time_interleaved; calls per engine capped so the four take about `seconds`. Agreement
    of edgert-int8 with onnxruntime-QDQ on 64 inputs of another seed, in output quantization
    steps. A model that does not compile in int8 is recorded with its error, not raised."""
    import numpy as np
    import onnxruntime as ort
    from edgert import sensor
    from edgert.errors import EdgertError
    from edgert.sensor.cli import ort_session, time_interleaved
    ort.set_default_logger_severity(3)  # the QDQ models' unused-initializer warnings, per session
    r: dict[str, Any] = {"f32_model": info["path"]}
    try:
        qpath = quantize_qdq(info["path"], out, activations)
    except Exception as e:  # noqa: BLE001 - a model onnxruntime cannot quantize is a result too
        r["error"] = f"onnxruntime.quantization: {type(e).__name__}: {e}"
        return r
    r["qdq_model"] = str(qpath)
    t0 = time.perf_counter()
    try:
        m = sensor.compile(str(qpath), dtype="int8")
    except Exception as e:  # noqa: BLE001 - recorded, typed or not (an untyped one is a bug)
        r["error"] = f"{type(e).__name__}: {e}"
        r["error_typed"] = isinstance(e, EdgertError)
        return r
    r["compile_s"] = time.perf_counter() - t0
    r["ops"] = dict(m.info.ops)
    mf = sensor.compile(info["path"])
    sq, sf = ort_session(str(qpath)), ort_session(info["path"])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in m.input_shapes]
    feeds = dict(zip(m.input_names, xs))
    engines = {"edgert_int8": (m, tuple(xs)), "onnxruntime_qdq": (sq.run, (None, feeds)),
               "onnxruntime_f32": (sf.run, (None, feeds)), "edgert_f32": (mf, tuple(xs))}
    t0 = time.perf_counter()
    for fn, a in engines.values():  # 20 calls each, for the cap
        for _ in range(20):
            fn(*a)
    per_round = (time.perf_counter() - t0) / 20
    r["iters"] = n = max(200, min(iters, int(seconds / per_round)))
    r.update(time_interleaved(engines, n))
    e, q, f, ef = (r[k] for k in engines)
    r["ratio_p50"], r["ratio_p99"] = e["p50_us"] / q["p50_us"], e["p99_us"] / q["p99_us"]
    r["ratio_cpu"] = e["cpu_us"] / q["cpu_us"]
    r["vs_f32_ratio_p50"] = e["p50_us"] / f["p50_us"]
    r["vs_f32_ratio_cpu"] = e["cpu_us"] / f["cpu_us"]
    r["qdq_vs_f32_ratio_p50"] = q["p50_us"] / f["p50_us"]
    r["edgert_int8_vs_f32_ratio_p50"] = e["p50_us"] / ef["p50_us"]
    # the same multiply-adds as the f32 model: int8 GOP/s per thread CPU time, per engine
    flops = model_flops(info["path"])["flops"]
    r["gops_cpu"] = {k: flops / r[k]["cpu_us"] / 1e3 for k in engines}
    need = flops / (0.2 * q["cpu_us"]) / 1e3  # GOP/s for 0.2x onnxruntime-QDQ's CPU time
    r["roofline"] = {"flops": flops, "gops_for_0.2x_qdq": need}
    if peak_gops:
        r["roofline"].update({"peak_gops": peak_gops, "floor_us": flops / peak_gops / 1e3,
                              "peak_fraction_for_0.2x_qdq": need / peak_gops,
                              "peak_fraction": {k: v / peak_gops
                                                for k, v in r["gops_cpu"].items()}})
    # agreement with onnxruntime running the same QDQ model (and each against the f32 model)
    steps = _output_steps(qpath)
    arng = np.random.default_rng(AGREE_SEED)
    agree: dict[str, Any] = {}
    for k, name in enumerate(m.output_names):
        agree[name] = {"step": steps.get(name), "max_abs": 0.0, "max_abs_ort_qdq_vs_f32": 0.0,
                       "max_abs_edgert_int8_vs_f32": 0.0, "ref_max_abs": 0.0, "top1_agree": None}
    calls = 64
    for _ in range(calls):
        x = [arng.standard_normal(s).astype(np.float32) for s in m.input_shapes]
        fd = dict(zip(m.input_names, x))
        ye = m(*x)
        ye = [ye] if len(m.output_names) == 1 else list(ye)
        yq, yf = sq.run(None, fd), sf.run(None, fd)
        for name, a, b, c in zip(m.output_names, ye, yq, yf):
            s = agree[name]
            a = np.asarray(a, np.float64)
            s["max_abs"] = max(s["max_abs"], float(np.abs(a - b).max()))
            s["max_abs_ort_qdq_vs_f32"] = max(s["max_abs_ort_qdq_vs_f32"],
                                              float(np.abs(b - c).max()))
            s["max_abs_edgert_int8_vs_f32"] = max(s["max_abs_edgert_int8_vs_f32"],
                                                  float(np.abs(a - c).max()))
            s["ref_max_abs"] = max(s["ref_max_abs"], float(np.abs(c).max()))
            if a.ndim >= 1 and a.shape[-1] > 1:
                same = np.array_equal(a.argmax(-1), np.asarray(b).argmax(-1))
                s["top1_agree"] = (s["top1_agree"] or 0) + int(same)
    for s in agree.values():
        s["calls"] = calls
        s["max_steps"] = s["max_abs"] / s["step"] if s["step"] else None
        s["max_rel_ref"] = s["max_abs"] / max(s["ref_max_abs"], 1e-30)
    r["agreement"] = agree
    return r


def _int8_line(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{name:18} int8 FAILED: {r['error']}"
    e, q, f = r["edgert_int8"], r["onnxruntime_qdq"], r["onnxruntime_f32"]
    ag = next(iter(r["agreement"].values()))
    agree = (f"{ag['max_steps']:.2f} steps" if ag["max_steps"] is not None
             else f"{ag['max_rel_ref']:.2e} of max|y|")
    if ag["top1_agree"] is not None:
        agree += f", top-1 {ag['top1_agree']}/{ag['calls']}"
    integer = {k: v for k, v in r["ops"].items()
               if k.startswith("QLinear") or k.endswith("Integer") or k == "QGemm"}
    roof = r["roofline"]
    need = f"{roof['gops_for_0.2x_qdq']:.0f}"
    if "peak_fraction_for_0.2x_qdq" in roof:
        need += f" ({100 * roof['peak_fraction_for_0.2x_qdq']:.0f}% of the int8 peak)"
    return (f"{name:18} int8 p50 {e['p50_us']:8.2f} us vs ORT QDQ {q['p50_us']:8.2f} us "
            f"({r['ratio_p50']:.3f}x; CPU {r['ratio_cpu']:.3f}x; p99 {r['ratio_p99']:.3f}x), "
            f"vs ORT f32 {f['p50_us']:8.2f} us ({r['vs_f32_ratio_p50']:.3f}x; CPU "
            f"{r['vs_f32_ratio_cpu']:.3f}x); edgert f32 {r['edgert_f32']['p50_us']:.2f} us\n"
            f"{'':18} GOP/s (CPU) edgert int8 {r['gops_cpu']['edgert_int8']:.1f}, ORT QDQ "
            f"{r['gops_cpu']['onnxruntime_qdq']:.1f}; 0.2x ORT QDQ needs {need}; "
            f"max |edgert - ORT QDQ| {agree}; integer ops {integer or 'none'}")


PARTS = ("latency", "compile", "rss", "streaming", "int8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="/work/bench-cache/sensor-models",
                    help="where the five models are built once (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    ap.add_argument("--iters", type=int, default=0, help="timed calls per engine and model")
    ap.add_argument("--only", default=",".join(PARTS),
                    help="comma-separated parts to measure, of %(default)s (latency includes "
                         "the roofline)")
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory")
    ap.add_argument("--int8-activations", default="int8", choices=["int8", "uint8"],
                    help="the int8 part's activation type (weights are int8): %(default)s")
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"--only: unknown part(s) {bad}; choose from {','.join(PARTS)}")
    from edgert.sensor.cli import bench_model
    la0 = loadavg()
    models = make_models(Path(args.models))
    iters = args.iters or (1000 if args.quick else 10000)
    repeats = 1 if args.quick else 3
    work_cache = tempfile.mkdtemp(prefix="edgert-sensor-bench-")
    os.environ["EDGERT_SENSOR_CACHE"] = work_cache
    env = dict(os.environ)
    rows: dict[str, Any] = {}
    peak = core_peak_gflops() if "latency" in parts else {}
    if peak:
        print(f"one core's peak: {peak['best_gflops']:.1f} GFLOP/s f32 ({peak['lanes']} lanes; "
              f"{peak['method']})", flush=True)
    ipeak = core_peak_int8_gops() if "int8" in parts else {}
    if ipeak.get("best_gops"):
        print(f"one core's int8 peak: {ipeak['best_gops']:.1f} GOP/s ({ipeak['lanes']} lanes; "
              f"{ipeak['method']})", flush=True)
    for name, info in models.items():
        r: dict[str, Any] = {"model": info["path"]}
        if "latency" in parts:
            r.update(bench_model(info["path"], iters=iters))
            r["roofline"] = roof = model_flops(info["path"])
            for eng in ("edgert", "onnxruntime"):
                roof[eng] = {"gflops_p50": roof["flops"] / r[eng]["p50_us"] / 1e3,
                             "gflops_cpu": roof["flops"] / r[eng]["cpu_us"] / 1e3}
                if peak:
                    roof[eng]["peak_fraction_cpu"] = roof[eng]["gflops_cpu"] / peak["best_gflops"]
            if peak:  # the least time the matrix work alone can take at peak
                roof["floor_us"] = roof["flops"] / peak["best_gflops"] / 1e3
        if "compile" in parts:
            r.update(compile_times(info["path"], repeats))
        if "rss" in parts:
            r["rss"] = peak_rss(info["path"], env)
        if "int8" in parts:
            r["int8"] = int8_compare(info, iters, Path(work_cache),
                                     activations=args.int8_activations,
                                     peak_gops=ipeak.get("best_gops"))
        rows[name] = r
        line = []
        if "latency" in parts:
            line.append(f"p50 {r['edgert']['p50_us']:8.2f} us vs {r['onnxruntime']['p50_us']:8.2f}"
                        f" us ({r['ratio_p50']:.3f}x; CPU/call {r['ratio_cpu']:.3f}x), "
                        f"p99 {r['edgert']['p99_us']:8.2f} vs {r['onnxruntime']['p99_us']:8.2f} us")
        if "compile" in parts:
            line.append(f"compile {r['compile_s'] * 1e3:.0f} ms, cached {r['cached_s'] * 1e3:.1f} "
                        f"ms ({r['cached_with_import_s'] * 1e3:.0f} ms with import)")
        if "rss" in parts:
            q = r["rss"]
            line.append(f"RSS vs onnxruntime {q['onnxruntime_mb']:.1f} MiB: edgert (numpy script) "
                        f"{q['edgert_mb']:.1f} MiB {q['ratio']:.2f}x (above the "
                        f"{q['baseline_mb']:.1f} MiB Python+numpy script {q['engine_ratio']:.2f}x), "
                        f"edgert (numpy-free script) {q['edgert_nonumpy_mb']:.1f} MiB "
                        f"{q['ratio_nonumpy']:.2f}x ({q['engine_nonumpy_mb']:.1f} MiB above the "
                        f"{q['baseline_nonumpy_mb']:.1f} MiB Python script)")
        if line:
            print(f"{name:18} " + "; ".join(line), flush=True)
        if "latency" in parts:
            e_, o_ = roof["edgert"], roof["onnxruntime"]
            print(f"{'':18} {roof['flops'] / 1e6:.3f} MFLOP: edgert {e_['gflops_cpu']:.1f} GFLOP/s, "
                  f"onnxruntime {o_['gflops_cpu']:.1f} GFLOP/s (per CPU time)"
                  + (f"; {100 * e_['peak_fraction_cpu']:.1f}% / "
                     f"{100 * o_['peak_fraction_cpu']:.1f}% of peak, floor {roof['floor_us']:.2f} us, "
                     f"0.2x onnxruntime needs "
                     f"{roof['flops'] / (0.2 * r['onnxruntime']['cpu_us']) / 1e3:.0f} "
                     f"GFLOP/s" if peak else ""), flush=True)
        if "int8" in parts:
            print(_int8_line(name, r["int8"]), flush=True)
    stream: dict[str, Any] = {}
    if "streaming" in parts:
        stream = streaming_rate(models["mlp_anomaly"], 1.0 if args.quick else 3.0)
        print(f"streaming MLP      {stream['samples_per_s']:,.0f} samples/s "
              f"({stream['windows_per_s']:,.0f} windows/s, window 128 hop 32, 1 thread)")
    la1 = loadavg()
    print(f"loadavg start {la0} end {la1}")
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "host": platform.node(), "machine": platform.processor() or platform.machine(),
              "python": sys.version.split()[0], "iters": iters, "loadavg_start": la0,
              "loadavg_end": la1, "parts": parts, "models": rows, "streaming": stream,
              "core_peak": peak, "core_peak_int8": ipeak,
              "int8_quantization": quant_settings(args.int8_activations) if "int8" in parts else {},
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"sensor-{stamp}-{platform.node()}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
