"""edgert.sensor's interface: the preallocated runner, run_batch, the on-disk cache and its light
cached start, the loaders, refusal of unsupported ops and dynamic shapes (and the onnxruntime
fallback), malformed files, the streaming front end and `edgert sensor` on the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
from onnx import TensorProto, helper  # noqa: E402

from sensor_reference import compare, make_model, ort_run  # noqa: E402

from edgert.errors import EdgertError, ModelFormatError, UnsupportedModelError  # noqa: E402

RNG = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def sensor_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("sensor-api-cache")
    old = os.environ.get("EDGERT_SENSOR_CACHE")
    os.environ["EDGERT_SENSOR_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("EDGERT_SENSOR_CACHE", None)
    else:
        os.environ["EDGERT_SENSOR_CACHE"] = old


def mlp(window: int = 32, hidden: int = 16, out: int = 3, shape=None) -> bytes:
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])]
    shape = shape or (1, window)
    return make_model(nodes, {"x": shape}, {"y": (shape[0], out)},
                      {"w1": w(window, hidden), "b1": w(hidden), "w2": w(hidden, out),
                       "b2": w(out)})


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("m") / "mlp.onnx"
    p.write_bytes(mlp())
    return p


# -- the runner ---------------------------------------------------------------------------------

def test_call_reuses_preallocated_output(mlp_path):
    from edgert import sensor
    m = sensor.compile(mlp_path)
    x1, x2 = w(1, 32), w(1, 32)
    y1 = m(x1)
    ref1 = ort_run(mlp_path.read_bytes(), {"x": x1})[0]
    compare(y1, ref1, "first call", 2e-5, 2e-6)
    y2 = m(x2)
    assert y2 is y1, "the output array must be the preallocated one"
    compare(y2, ort_run(mlp_path.read_bytes(), {"x": x2})[0], "second call", 2e-5, 2e-6)
    # any contiguous float32 of the right size is taken as is; other inputs are converted
    compare(m(x2.reshape(32)).copy(), y2, "flat input", 0, 0)
    compare(m(x2.astype(np.float64)).copy(), y2, "float64 input", 0, 0)
    compare(m(np.asfortranarray(np.repeat(x2, 2, 0))[:1]).copy(), y2, "strided input", 0, 0)
    with pytest.raises(ValueError, match="elements"):
        m(np.zeros(31, np.float32))
    with pytest.raises(TypeError):
        m(x1, x2)


def test_run_batch_matches_calls(mlp_path):
    from edgert import sensor
    m = sensor.compile(mlp_path)
    xs = w(50, 32)
    ys = m.run_batch(xs)
    assert ys.shape == (50, 1, 3)
    for i in (0, 17, 49):
        compare(ys[i], m(xs[i]).copy(), f"item {i}", 0, 0)
    out = np.empty((50, 1, 3), np.float32)
    assert m.run_batch(xs.reshape(50, 1, 32), out=out) is out
    with pytest.raises(ValueError):
        m.run_batch(w(4, 31))


def test_loaders_agree(mlp_path):
    from edgert import sensor
    x = w(1, 32)
    a = sensor.compile(mlp_path, loader="so", cache=False)
    b = sensor.compile(mlp_path, loader="mcjit", cache=False)
    assert (a.info.loader, b.info.loader) == ("shared-library", "mcjit")
    compare(a(x).copy(), b(x).copy(), "so vs mcjit", 0, 0)


# -- the cache -----------------------------------------------------------------------------------

def test_cache_hit_and_damaged_entry(mlp_path, sensor_cache):
    from edgert import sensor
    first = sensor.compile(mlp_path, input_shapes={"x": (1, 32)})
    second = sensor.compile(mlp_path, input_shapes={"x": (1, 32)})
    assert second.info.cache_hit and Path(second.info.path).parent == sensor_cache
    (Path(second.info.path) / "meta.json").write_text("{not json")
    third = sensor.compile(mlp_path, input_shapes={"x": (1, 32)})
    assert not third.info.cache_hit
    x = w(1, 32)
    compare(third(x).copy(), first(x).copy(), "rebuilt", 0, 0)


def test_cached_start_imports_neither_onnx_nor_llvmlite(mlp_path, sensor_cache, tmp_path):
    from edgert import sensor
    sensor.compile(mlp_path)
    script = textwrap.dedent(f"""
        import sys
        from edgert import sensor
        m = sensor.compile({str(mlp_path)!r})
        assert m.info.cache_hit, m.info
        heavy = [k for k in ("onnx", "onnxruntime", "llvmlite", "torch") if k in sys.modules]
        assert not heavy, heavy
        print("ok", m.info.seconds)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, EDGERT_SENSOR_CACHE=str(sensor_cache)))
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]


def test_buffer_inputs_return_preallocated_memoryviews(mlp_path):
    """The output rule: numpy in -> numpy out, any other input -> memoryview out; both are views
    of the same preallocated buffer (the same object every call)."""
    import array
    from edgert import sensor
    m = sensor.compile(mlp_path)
    x = w(1, 32)
    ref = ort_run(mlp_path.read_bytes(), {"x": x})[0]
    y = m(array.array("f", x.ravel().tolist()))
    assert isinstance(y, memoryview) and (y.format, y.shape) == ("f", (1, 3))
    compare(np.array(y.tolist()), ref, "array.array input", 2e-5, 2e-6)
    assert m(memoryview(x).cast("B").cast("f")) is y, "the output view must be the preallocated one"
    compare(np.array(y.tolist()), ref, "memoryview input", 2e-5, 2e-6)
    # converted inputs: a list (nested or flat), a float64 buffer
    compare(np.array(m(x.tolist()).tolist()), ref, "nested list", 2e-5, 2e-6)
    compare(np.array(m(array.array("d", x.ravel().tolist())).tolist()), ref, "float64 buffer",
            2e-5, 2e-6)
    yn = m(x)
    assert isinstance(yn, np.ndarray) and yn.ctypes.data == np.asarray(y).ctypes.data
    with pytest.raises(ValueError, match="elements"):
        m(array.array("f", [0.0] * 31))
    xs = w(4, 32)
    refs = np.stack([ort_run(mlp_path.read_bytes(), {"x": xs[i:i + 1]})[0] for i in range(4)])
    flat = m.run_batch(array.array("f", xs.ravel().tolist()))
    assert isinstance(flat, memoryview) and flat.shape == (4, 1, 3)
    compare(np.array(flat.tolist()), refs, "run_batch flat buffer", 2e-5, 2e-6)
    out = array.array("f", bytes(4 * 12))
    assert m.run_batch([r.tolist() for r in xs], out=out) is out
    compare(np.array(out).reshape(4, 1, 3), refs, "run_batch list into out", 2e-5, 2e-6)
    with pytest.raises(ValueError, match="item 1"):
        m.run_batch([[0.0] * 32, [0.0] * 31])
    with pytest.raises(ValueError, match="out"):
        m.run_batch(xs, out=array.array("f", bytes(4 * 11)))


def test_cached_run_with_buffers_never_imports_numpy(mlp_path, sensor_cache, tmp_path):
    """A deployed script: the model is in the cache (or an AOT library for this machine), the
    inputs are array.array; compile/load, call, run_batch and stream must not import numpy, and
    give onnxruntime's values."""
    import platform
    from edgert import sensor
    sensor.compile(mlp_path)
    target = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(platform.machine())
    lib = None
    if target:
        lib = sensor.compile(mlp_path, target=target, output_dir=tmp_path / "aot").library
        assert lib is not None or target != "x86_64-linux-gnu", "cc links the host library"
    x = w(1, 32)
    xs = w(3, 32)
    sig = RNG.standard_normal(48).astype(np.float32)
    (tmp_path / "in.json").write_text(json.dumps(
        {"x": x.ravel().tolist(), "xs": xs.ravel().tolist(), "sig": sig.tolist()}))
    script = textwrap.dedent(f"""
        import array, json, sys
        from edgert import sensor
        d = json.load(open("in.json"))
        m = sensor.compile({str(mlp_path)!r})
        assert m.info.cache_hit, m.info
        y = m(array.array("f", d["x"]))
        assert isinstance(y, memoryview), type(y)
        y = y.tolist()  # the stream below reuses the model's output buffer
        ys = m.run_batch(array.array("f", d["xs"]))
        s = sensor.WindowStream(m, 32, 8, mean=0.5, std=2.0)
        st = s.push(array.array("f", d["sig"]))
        lib = {str(lib) if lib else None!r}
        y_lib = sensor.load(lib)(array.array("f", d["x"])).tolist() if lib else None
        loaded = [k for k in sys.modules if k == "numpy" or k.startswith("numpy.")]
        print(json.dumps({{"y": y, "y_lib": y_lib, "ys": ys.tolist(), "stream": st.tolist(),
                          "numpy": loaded}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, EDGERT_SENSOR_CACHE=str(sensor_cache)))
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["numpy"] == [], f"the numpy-free run path imported {got['numpy'][:5]}"
    data = mlp_path.read_bytes()
    compare(np.array(got["y"]), ort_run(data, {"x": x})[0], "numpy-free call", 2e-5, 2e-6)
    if lib:
        compare(np.array(got["y_lib"]), ort_run(data, {"x": x})[0], "numpy-free sensor.load",
                2e-5, 2e-6)
    compare(np.array(got["ys"]), np.stack([ort_run(data, {"x": xs[i:i + 1]})[0]
                                           for i in range(3)]), "numpy-free run_batch", 2e-5, 2e-6)
    wins = (_windows(sig, 32, 8) - np.float32(0.5)) / np.float32(2.0)
    compare(np.array(got["stream"]), np.concatenate([ort_run(data, {"x": v[None]})[0]
                                                     for v in wins]), "numpy-free stream",
            2e-5, 2e-6)


# -- refusals and the fallback --------------------------------------------------------------------

def test_unsupported_op_names_op_and_node():
    from edgert import sensor
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Hardmax", ["r"], ["y"], name="pick_one", axis=1)]
    model = make_model(nodes, {"x": (2, 5)}, {"y": (2, 5)})
    with pytest.raises(UnsupportedModelError) as e:
        sensor.compile(model)
    assert "Hardmax" in str(e.value) and "pick_one" in str(e.value)
    assert "fallback='onnxruntime'" in str(e.value)
    m = sensor.compile(model, fallback="onnxruntime")
    assert m.backend == "onnxruntime" and "Hardmax" in m.reason
    x = w(2, 5)
    compare(m(x), ort_run(model, {"x": x})[0], "fallback", 0, 0)


def test_dynamic_shape_refused_then_pinned():
    from edgert import sensor
    model = mlp(shape=("batch", 32))
    with pytest.raises(UnsupportedModelError, match="dynamic shape.*'x'.*batch"):
        sensor.compile(model)
    m = sensor.compile(model, input_shapes={"x": (4, 32)})
    x = w(4, 32)
    compare(m(x).copy(), ort_run(model, {"x": x})[0], "pinned", 2e-5, 2e-6)
    assert sensor.compile(model, fallback="onnxruntime").backend == "onnxruntime"


# -- malformed files -------------------------------------------------------------------------------

def _cycle_model() -> bytes:
    import onnx
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    g = helper.make_graph(nodes, "cyc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    del onnx


def _reordered_model() -> bytes:
    nodes = [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Neg", ["x"], ["a"])]
    return make_model(nodes, {"x": (4,)}, {"y": (4,)})


def _huge_initializer() -> bytes:
    import onnx
    t = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "h",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1 << 20])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1 << 20])],
                          initializer=[t])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


MALFORMED = {
    "empty": lambda: b"",
    "garbage": lambda: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
    "truncated": lambda: mlp()[:-37],
    "cycle": _cycle_model,
    "unsorted nodes": _reordered_model,
    "gemm K mismatch": lambda: make_model([helper.make_node("Gemm", ["x", "w"], ["y"])],
                                          {"x": (1, 8)}, {"y": (1, 4)}, {"w": w(9, 4)}),
    "no broadcast": lambda: make_model([helper.make_node("Add", ["x", "c"], ["y"])],
                                       {"x": (2, 3)}, {"y": (2, 3)}, {"c": w(4)}),
    "conv channels": lambda: make_model([helper.make_node("Conv", ["x", "w"], ["y"])],
                                        {"x": (1, 3, 8)}, {"y": (1, 4, 6)}, {"w": w(4, 2, 3)}),
    "huge input dims": lambda: make_model([helper.make_node("Relu", ["x"], ["y"])],
                                          {"x": (1, 1 << 40)}, {"y": (1, 1 << 40)}),
    "huge initializer dims": _huge_initializer,
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_model_is_a_typed_error(case):
    from edgert import sensor
    with pytest.raises((ModelFormatError, UnsupportedModelError)) as e:
        sensor.compile(MALFORMED[case]())
    assert str(e.value)


def test_mutated_models_never_crash(tmp_path):
    """Truncations and byte flips of a real model, in a child process: every one must compile or
    raise an EdgertError (a crash or another exception type fails)."""
    base = tmp_path / "base.onnx"
    base.write_bytes(mlp())
    script = textwrap.dedent(f"""
        import numpy as np
        from edgert import sensor
        from edgert.errors import EdgertError
        data = open({str(base)!r}, "rb").read()
        rng = np.random.default_rng(0)
        ok = err = 0
        for i in range(120):
            d = bytearray(data)
            if i % 2:
                d = d[: int(rng.integers(0, len(d)))]
            else:
                for _ in range(int(rng.integers(1, 6))):
                    d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
            try:
                m = sensor.compile(bytes(d), cache=False)
                m(*[np.zeros(s, np.float32) for s in m.input_shapes])
                ok += 1
            except EdgertError:
                err += 1
        print(ok, err)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ok, err = map(int, r.stdout.split())
    assert ok + err == 120 and err > 0


# -- streaming ---------------------------------------------------------------------------------------

def _windows(sig: np.ndarray, window: int, hop: int) -> np.ndarray:
    starts = range(0, len(sig) - window + 1, hop)
    return np.stack([sig[s:s + window] for s in starts])


@pytest.mark.parametrize("layout", ["cw", "wc"])
def test_stream_matches_windows(layout):
    from edgert import sensor
    W, H, C = 24, 5, 3
    shape = (1, C, W) if layout == "cw" else (1, W, C)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"])]
    model = make_model(nodes, {"x": shape}, {"y": (1, 4)}, {"w": w(W * C, 4)})
    m = sensor.compile(model)
    mean, std = np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 1.5])
    s = sensor.WindowStream(m, W, H, mean=mean, std=std)
    sig = RNG.standard_normal((503, C)).astype(np.float32)
    outs, i = [], 0
    for k in [1, 2, 3, 50, 7, 0, 200, 240]:
        outs.append(s.push(sig[i:i + k]))
        i += k
    got = np.concatenate(outs)
    wins = ((_windows(sig, W, H) - mean) / std).astype(np.float32)
    assert len(got) == len(wins) == (503 - W) // H + 1
    feeds = wins.transpose(0, 2, 1) if layout == "cw" else wins
    ref = np.stack([ort_run(model, {"x": f.reshape(shape)})[0][0] for f in feeds])
    compare(got, ref, "stream", 2e-5, 2e-6)
    assert s.samples_seen == 503


def test_stream_spectrum_feature():
    from edgert import sensor
    W, C = 32, 2
    bins = W // 2 + 1
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], {"x": (1, C, bins)},
                       {"y": (1, C, bins)})
    m = sensor.compile(model)
    s = sensor.WindowStream(m, W, W, spectrum=True, mean=[1.0, 0.0], std=[1.0, 2.0])
    sig = RNG.standard_normal((3 * W, C)).astype(np.float32)
    got = s.push(sig).reshape(3, C, bins)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(W) / W)
    norm = (sig - np.array([1.0, 0.0])) / np.array([1.0, 2.0])
    for k in range(3):
        ref = np.abs(np.fft.rfft(norm[k * W:(k + 1) * W].T * hann, axis=1))
        compare(got[k], ref, f"spectrum {k}", 1e-4, 1e-4)


def test_stream_layout_errors():
    from edgert import sensor
    from edgert.errors import InvalidArgumentError
    m = sensor.compile(mlp())
    with pytest.raises(InvalidArgumentError, match="window of 30"):
        sensor.WindowStream(m, 30, 10)
    s = sensor.WindowStream(m, 32, 8)
    with pytest.raises(ValueError):
        s.push(np.zeros((10, 2), np.float32))


# -- command line -------------------------------------------------------------------------------------

def _edgert(*args: str, stdin: str = "", env=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("edgert")
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True,
                          env=env or os.environ, timeout=300)


def test_cli_run_prints_one_line_per_window(mlp_path):
    sig = RNG.standard_normal(200).astype(np.float32)
    csv = "\n".join(f"{v:.6f}" for v in sig) + "\n"
    r = _edgert("sensor", "run", str(mlp_path), "--window", "32", "--hop", "8", stdin=csv)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == (200 - 32) // 8 + 1
    got = np.array([[float(v) for v in ln.split(",")] for ln in lines])
    vals = np.array([float(f"{v:.6f}") for v in sig], np.float32)
    ref = np.stack([ort_run(mlp_path.read_bytes(), {"x": win.reshape(1, 32)})[0][0]
                    for win in _windows(vals, 32, 8)])
    compare(got, ref, "cli run", 1e-5, 1e-5)  # printed with 6 significant digits


def test_cli_bench_json(mlp_path):
    import json
    r = _edgert("sensor", "bench", str(mlp_path), "--iters", "50", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["edgert"]["p50_us"] > 0 and rep["onnxruntime"]["p99_us"] > 0


def test_time_interleaved_alternates_engines():
    # the benchmarks' timer: warm-up rounds over every engine, then blocks of iters // blocks
    # calls per engine in turn, so a load change hits every engine alike
    from edgert.sensor.cli import time_interleaved
    log: list[str] = []
    r = time_interleaved({"a": (log.append, ("a",)), "b": (log.append, ("b",))}, iters=12,
                         blocks=3, warmup=2)
    assert "".join(log) == "abab" + "aaaabbbb" * 3
    for k in "ab":
        assert set(r[k]) == {"p50_us", "p90_us", "p99_us", "mean_us", "cpu_us"}
        assert 0 < r[k]["p50_us"] <= r[k]["p99_us"] and r[k]["cpu_us"] >= 0


def test_cli_without_extra_says_what_to_install(tmp_path, mlp_path):
    # a sitecustomize that hides llvmlite stands in for an install without edgert[sensor]
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("llvmlite", "onnx"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, _Hide())
    """))
    # an empty cache: `run` needs the extra only to compile
    env = dict(os.environ, PYTHONPATH=str(tmp_path), EDGERT_SENSOR_CACHE=str(tmp_path / "empty"))
    r = _edgert("sensor", "run", str(mlp_path), "--window", "32", "--hop", "8", env=env)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and 'pip install "edgert[sensor]"' in r.stderr, r.stderr


# Hides numpy and the sensor extra (and torch, which the `edgert` command's other subcommands
# would import) from a fresh process, and writes down which module tried to import numpy.
_HIDE_NUMPY = """
import os, sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top == "numpy":
            f = sys._getframe(1)
            while f and (f.f_globals.get("__name__", "").startswith(("importlib", "_frozen"))
                         or f.f_code.co_filename.startswith("<frozen")):
                f = f.f_back
            with open(os.environ["NUMPY_IMPORTERS"], "a") as log:
                log.write((f.f_globals.get("__name__", "?") if f else "?") + "\\n")
        if top in ("numpy", "onnx", "onnxruntime", "llvmlite", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
sys.meta_path.insert(0, _Hide())
"""


def test_cli_run_cached_model_without_numpy_or_extra(tmp_path, sensor_cache):
    """A board with a cached model (or an AOT .so) and neither numpy nor the extra: `python -m
    edgert sensor run` parses the CSV (commas, spaces, a comment, a blank line), streams and
    prints without them, and prints onnxruntime's values; nothing (edgert.sensor, the `edgert`
    command's other subcommands) even tries to import numpy."""
    from edgert import sensor
    W, H, C = 16, 5, 2
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    model = make_model(nodes, {"x": (1, C, W)}, {"y": (1, 4)}, {"w": w(W * C, 4), "b": w(4)})
    path = tmp_path / "cw.onnx"
    path.write_bytes(model)
    sensor.compile(path)  # into the cache the subprocess reads
    sig = RNG.standard_normal((203, C)).astype(np.float32)
    lines = [f"{a:.6f},{b:.6f}" if i % 3 else f"{a:.6f} {b:.6f}" for i, (a, b) in enumerate(sig)]
    lines[7] += "  # a comment"
    lines.insert(50, "")
    csv = "# ax, ay\n" + "\n".join(lines) + "\n"
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(_HIDE_NUMPY)
    log = tmp_path / "numpy-importers.txt"
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "hide"), NUMPY_IMPORTERS=str(log),
               EDGERT_SENSOR_CACHE=str(sensor_cache))
    # and an AOT library for this machine (`edgert sensor compile --target`), run without a cache
    import platform
    target = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(platform.machine())
    lib = sensor.compile(path, target=target, output_dir=tmp_path / "aot").library if target \
        else None
    assert lib is not None or target != "x86_64-linux-gnu", "cc links the host library"
    mean, std = [0.5, -1.0], [2.0, 0.5]
    outs = {}
    for flag, model_arg in (("", path), ("--argmax", path), ("lib", lib)):
        if model_arg is None:
            continue
        r = subprocess.run([sys.executable, "-m", "edgert", "sensor", "run", str(model_arg),
                            "--window", str(W), "--hop", str(H), "--mean", "0.5,-1", "--std",
                            "2,0.5"] + ([flag] if flag == "--argmax" else []), input=csv,
                           capture_output=True, text=True, cwd=tmp_path, timeout=120,
                           env=env if model_arg == path else
                           dict(env, EDGERT_SENSOR_CACHE=str(tmp_path / "none")))
        assert r.returncode == 0, r.stderr[-2000:]
        outs[flag] = r.stdout
    importers = log.read_text().split() if log.exists() else []
    assert importers == [], f"`edgert sensor run` tried to import numpy from {importers}"
    vals = np.array([[float(f"{v:.6f}") for v in row] for row in sig], np.float32)
    wins = (_windows(vals, W, H) - np.float32(mean)) / np.float32(std)
    ref = np.stack([ort_run(model, {"x": v.T[None].copy()})[0][0] for v in wins])
    got = np.array([[float(v) for v in ln.split(",")] for ln in outs[""].splitlines()])
    compare(got, ref, "numpy-free `edgert sensor run`", 1e-5, 1e-5)  # 6 significant digits
    if lib:  # built for a generic CPU (no FMA): not the same bits as the host's JIT code
        got = np.array([[float(v) for v in ln.split(",")] for ln in outs["lib"].splitlines()])
        compare(got, ref, "numpy-free `edgert sensor run` of an AOT .so", 1e-5, 1e-5)
    idx = [int(v) for v in outs["--argmax"].split()]
    assert len(idx) == len(ref)
    assert all(ref[i, k] >= ref[i].max() - 1e-5 for i, k in enumerate(idx)), (idx, ref)
