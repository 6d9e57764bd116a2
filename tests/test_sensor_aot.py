"""Ahead-of-time compiles of edgert.sensor: an aarch64 object and shared library run by a C program
under qemu-aarch64 (no LLVM, no Python on the "board"), checked against onnxruntime on the host;
and a host library loaded by a Python script that has neither llvmlite nor onnx.

Needs g++-aarch64-linux-gnu and qemu-user (.ci/run installs both; README lists them)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
from onnx import helper  # noqa: E402

from sensor_reference import compare, make_model, ort_run  # noqa: E402

HERE = Path(__file__).resolve().parent
SYSROOT = "/usr/aarch64-linux-gnu"
RNG = np.random.default_rng(11)


def w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.4).astype(np.float32)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install g++-aarch64-linux-gnu qemu-user"
    return path


def conv_model() -> bytes:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[5], pads=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2], strides=[2]),
             helper.make_node("Conv", ["p", "w2"], ["d"], kernel_shape=[3], pads=[1, 1], group=8),
             helper.make_node("HardSwish", ["d"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    inits = {"w": w(8, 3, 5), "b": w(8), "g": w(8) + 1, "be": w(8), "mu": w(8),
             "var": np.abs(w(8)) + 0.5, "w2": w(16, 1, 3), "fc": w(4, 16)}
    return make_model(nodes, {"x": (1, 3, 64)}, {"y": (1, 4)}, inits)


def gru_model() -> bytes:
    H = 12
    nodes = [helper.make_node("GRU", ["x", "W", "R", "B"], ["", "h"], hidden_size=H,
                              linear_before_reset=1),
             helper.make_node("Reshape", ["h", "shape"], ["hf"]),
             helper.make_node("Gemm", ["hf", "fc"], ["z"]),
             helper.make_node("Tanh", ["z"], ["y"])]
    inits = {"W": w(1, 3 * H, 3), "R": w(1, 3 * H, H), "B": w(1, 6 * H),
             "shape": np.array([1, H], np.int64), "fc": w(H, 5)}
    return make_model(nodes, {"x": (20, 1, 3)}, {"y": (1, 5)}, inits)


@pytest.mark.slow
@pytest.mark.parametrize("name,build,shape", [("conv", conv_model, (1, 3, 64)),
                                              ("gru", gru_model, (20, 1, 3))])
def test_aarch64_library_under_qemu(tmp_path, name, build, shape):
    from edgert import sensor
    gcc = _tool("aarch64-linux-gnu-gcc")
    qemu = _tool("qemu-aarch64")
    model = tmp_path / f"{name}.onnx"
    model.write_bytes(build())
    art = sensor.compile(model, target="aarch64-linux-gnu", output_dir=tmp_path / "out")
    assert art.library is not None and art.library.exists()
    head = art.object.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    hdr = f'-DMODEL_HEADER="{art.header}"'
    static_bin, dl_bin = tmp_path / "run_static", tmp_path / "run_dlopen"
    subprocess.run([gcc, "-O2", hdr, str(HERE / "sensor_aot_driver.c"), str(art.object), "-lm",
                    "-o", str(static_bin)], check=True, capture_output=True)
    subprocess.run([gcc, "-O2", hdr, "-DUSE_DLOPEN", str(HERE / "sensor_aot_driver.c"),
                    "-ldl", "-o", str(dl_bin)], check=True, capture_output=True)
    for case, x in (("random", RNG.standard_normal(shape)), ("zeros", np.zeros(shape)),
                    ("large", RNG.standard_normal(shape) * 1e3)):
        x = x.astype(np.float32)
        x.tofile(tmp_path / "in.bin")
        ref = ort_run(model.read_bytes(), {"x": x})[0]
        for binary, extra in ((static_bin, []), (dl_bin, [str(art.library)])):
            out = tmp_path / "out.bin"
            out.unlink(missing_ok=True)
            r = subprocess.run([qemu, "-cpu", "max", "-L", SYSROOT, str(binary),
                                str(tmp_path / "in.bin"), str(out), *extra],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (binary.name, r.returncode, r.stderr)
            got = np.fromfile(out, np.float32).reshape(ref.shape)
            compare(got, ref, f"{name} {case} {binary.name}", 1e-4, 1e-5,
                    scale=1e3 if case == "large" else 1.0)


def qdq_gemm_model(rng: np.random.Generator, act: int, M: int = 13, K: int = 19,
                   N: int = 37, wzp: bool = False) -> bytes:
    """x [M, K] -> Q/DQ -> Gemm (per-row int8 weights with the extremes, float bias) -> Q/DQ:
    dtype="int8" makes a QGemm of it; M, K and N no multiple of the tiles or of 4 (the dot
    products' tails). wzp: nonzero weight zero points put w - w_zp outside int8 (SDOT hands
    over to the generic kernel)."""
    qt = np.int8 if act == 3 else np.uint8
    wq = rng.integers(-127, 128, (N, K)).astype(np.int8)
    wq[:, 0], wq[:, -1] = 127, -127
    inits = {"x.s": np.array(0.03, np.float32), "x.z": np.array(-3 if act == 3 else 140, qt),
             "w": wq, "w.s": rng.uniform(0.002, 0.02, N).astype(np.float32),
             "w.z": rng.integers(-3, 4, N).astype(np.int8) if wzp else np.zeros(N, np.int8),
             "b": (rng.standard_normal(N) * 0.3).astype(np.float32),
             "y.s": np.array(0.05, np.float32), "y.z": np.array(7 if act == 3 else 121, qt)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x.s", "x.z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x.s", "x.z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "w.s", "w.z"], ["wd"], axis=0),
             helper.make_node("Gemm", ["xd", "wd", "b"], ["g"], transB=1),
             helper.make_node("QuantizeLinear", ["g", "y.s", "y.z"], ["gq"]),
             helper.make_node("DequantizeLinear", ["gq", "y.s", "y.z"], ["y"])]
    return make_model(nodes, {"x": (M, K)}, {"y": None}, inits, opset=19)


def _int8_model(name: str, act: int) -> tuple[bytes, tuple[int, ...]]:
    from sensor_reference import qdq_conv_chain_model
    rng = np.random.default_rng(act)
    if name == "conv_chain":
        return qdq_conv_chain_model(rng, act=act), (1, 5, 9, 8)
    return qdq_gemm_model(rng, act, wzp=name == "gemm_wzp"), (13, 19)


def _sdot_count(obj: Path) -> int:
    import re
    dis = subprocess.run([_tool("aarch64-linux-gnu-objdump"), "-d", str(obj)],
                         capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"\ssdot\s+v\d+\.4s, v\d+\.16b, v\d+\.16b", dis))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["aarch64-linux-gnu", "aarch64-linux-gnu+dotprod"])
@pytest.mark.parametrize("act", [3, 2])  # int8, uint8 activations
@pytest.mark.parametrize("name", ["conv_chain", "gemm", "gemm_wzp"])
def test_aarch64_int8_library_under_qemu(tmp_path, monkeypatch, name, act, target):
    """dtype="int8" for aarch64: the generic int8 kernels (the default target, plain NEON) or
    the SDOT GEMM and depthwise kernels ("+dotprod": the object must hold sdot instructions,
    the default one none),
    run under qemu-aarch64 -cpu max: bit for bit the host's scalar twin
    (EDGERT_SENSOR_KERNELS=scalar) and within one output step of onnxruntime, on random,
    zero, saturating and alternating-extreme inputs (QLinearConv chain: 3x3 from NCHW,
    pointwise, depthwise, grouped strided; QGemm: M = 13, K = 19, N = 37, and with weight
    zero points that push w - w_zp out of int8: the generic kernel, no sdot)."""
    from edgert import sensor
    gcc = _tool("aarch64-linux-gnu-gcc")
    qemu = _tool("qemu-aarch64")
    data, shape = _int8_model(name, act)
    model = tmp_path / f"{name}.onnx"
    model.write_bytes(data)
    for k in ("EDGERT_SENSOR_INT8_DOT", "EDGERT_SENSOR_VECTOR_WIDTH", "EDGERT_SENSOR_KERNELS"):
        monkeypatch.delenv(k, raising=False)
    art = sensor.compile(model, target=target, dtype="int8", output_dir=tmp_path / "out")
    ops = json.loads(art.meta.read_text())["ops"]
    want = {"QLinearConv": 4} if name == "conv_chain" else {"QGemm": 1}
    assert all(ops.get(k) == v for k, v in want.items()), ops
    n_sdot = _sdot_count(art.object)
    if target.endswith("+dotprod") and name != "gemm_wzp":
        assert n_sdot > 0, "the +dotprod build has no sdot instruction"
    else:
        assert n_sdot == 0, f"the portable aarch64 build holds {n_sdot} sdot instructions"
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")
    twin = sensor.compile(model, dtype="int8", cache=False)
    binary = tmp_path / "run_static"
    subprocess.run([gcc, "-O2", f'-DMODEL_HEADER="{art.header}"',
                    str(HERE / "sensor_aot_driver.c"), str(art.object), "-lm", "-o",
                    str(binary)], check=True, capture_output=True)
    alt = np.where(np.arange(np.prod(shape)).reshape(shape) % 3 == 0, -1e4, 1e4)
    for case, x in (("random", RNG.standard_normal(shape)), ("zeros", np.zeros(shape)),
                    ("large", RNG.standard_normal(shape) * 100), ("extremes", alt)):
        x = x.astype(np.float32)
        x.tofile(tmp_path / "in.bin")
        ref = ort_run(data, {"x": x})[0]
        out = tmp_path / "out.bin"
        out.unlink(missing_ok=True)
        r = subprocess.run([qemu, "-cpu", "max", "-L", SYSROOT, str(binary),
                            str(tmp_path / "in.bin"), str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.returncode, r.stderr)
        got = np.fromfile(out, np.float32).reshape(ref.shape)
        np.testing.assert_array_equal(got, twin(x), err_msg=f"{name} {target} {case} vs scalar")
        step = 0.06 if name == "conv_chain" else 0.05  # the output scale
        err = np.abs(got - ref).max()
        assert err <= step + 1e-6, f"int8 {target} {case}: {err} > one output step ({step})"


def test_host_library_loads_without_llvm(tmp_path):
    """An AOT library for this machine, loaded by a script where llvmlite and onnx are hidden."""
    from edgert import sensor
    model = tmp_path / "conv.onnx"
    model.write_bytes(conv_model())
    art = sensor.compile(model, target="x86_64-linux-gnu", output_dir=tmp_path / "lib")
    assert art.library is not None
    x = RNG.standard_normal((1, 3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("llvmlite", "onnx", "onnxruntime"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, _Hide())
    """))
    script = textwrap.dedent(f"""
        import numpy as np
        from edgert import sensor
        m = sensor.load({str(art.library)!r})
        np.save({str(tmp_path / 'y.npy')!r}, m(np.load({str(tmp_path / 'x.npy')!r})))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert r.returncode == 0, r.stderr[-2000:]
    compare(np.load(tmp_path / "y.npy"), ort_run(model.read_bytes(), {"x": x})[0], "host lib",
            2e-5, 2e-6)
