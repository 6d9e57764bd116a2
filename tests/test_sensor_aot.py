"""Ahead-of-time compiles of edgert.sensor: an aarch64 object and shared library run by a C program
under qemu-aarch64 (no LLVM, no Python on the "board"), checked against onnxruntime on the host;
and a host library loaded by a Python script that has neither llvmlite nor onnx.

Needs g++-aarch64-linux-gnu and qemu-user (.ci/run installs both; README lists them)."""
from __future__ import annotations

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


@pytest.mark.slow
@pytest.mark.parametrize("act", [3, 2])  # int8, uint8 activations
def test_aarch64_int8_library_under_qemu(tmp_path, act):
    """dtype="int8" for aarch64: the generic int8 kernels (no VNNI) and the channels-last
    QLinearConv chain, within one output step of onnxruntime on its own QDQ model."""
    from edgert import sensor
    from sensor_reference import qdq_conv_chain_model
    gcc = _tool("aarch64-linux-gnu-gcc")
    qemu = _tool("qemu-aarch64")
    model = tmp_path / "qdq.onnx"
    model.write_bytes(qdq_conv_chain_model(np.random.default_rng(act), act=act))
    art = sensor.compile(model, target="aarch64-linux-gnu", dtype="int8",
                         output_dir=tmp_path / "out")
    binary = tmp_path / "run_static"
    subprocess.run([gcc, "-O2", f'-DMODEL_HEADER="{art.header}"',
                    str(HERE / "sensor_aot_driver.c"), str(art.object), "-lm", "-o",
                    str(binary)], check=True, capture_output=True)
    for case, x in (("random", RNG.standard_normal((1, 5, 9, 8))),
                    ("large", RNG.standard_normal((1, 5, 9, 8)) * 100)):
        x = x.astype(np.float32)
        x.tofile(tmp_path / "in.bin")
        ref = ort_run(model.read_bytes(), {"x": x})[0]
        out = tmp_path / "out.bin"
        out.unlink(missing_ok=True)
        r = subprocess.run([qemu, "-cpu", "max", "-L", SYSROOT, str(binary),
                            str(tmp_path / "in.bin"), str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.returncode, r.stderr)
        got = np.fromfile(out, np.float32).reshape(ref.shape)
        err = np.abs(got - ref).max()
        assert err <= 0.06 + 1e-6, f"int8 aarch64 {case}: {err} > one output step (0.06)"


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
