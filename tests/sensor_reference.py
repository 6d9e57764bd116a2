"""The onnxruntime reference harness of the sensor tests: build small ONNX models, run them
through edgert.sensor and onnxruntime (the reference nobody here wrote), and compare within the
tolerance named per dtype on random inputs and on edge values (zeros, large magnitudes, NaN)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

# Per-dtype tolerances: |ours - ort| <= atol + rtol * |ort|. f32: the code generator reassociates
# sums and uses polynomial exp/tanh/erf (a few ulp), so a few 1e-6 relative plus a small absolute
# term for results near zero. int8: one quantization step of the output (ORT and we may round a
# tie or an accumulated float differently), checked in the quantized tests themselves.
TOL = {"f32": dict(rtol=2e-5, atol=2e-6), "f32_transcendental": dict(rtol=1e-4, atol=1e-6)}


def make_model(nodes: Sequence[Any], inputs: dict[str, Sequence[int]],
               outputs: dict[str, Optional[Sequence[int]]], inits: Optional[dict] = None,
               opset: int = 17, extra_opsets: Optional[dict[str, int]] = None,
               in_types: Optional[dict[str, int]] = None) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    in_types = in_types or {}
    g = helper.make_graph(
        list(nodes), "t",
        [helper.make_tensor_value_info(k, in_types.get(k, TensorProto.FLOAT), v)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in
                                              (extra_opsets or {}).items()]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = min(m.ir_version, 10)
    return m.SerializeToString()


def ort_run(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def edge_inputs(shape: Sequence[int], rng: np.random.Generator, scale: float = 1.0
                ) -> list[tuple[str, np.ndarray]]:
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    big = (rng.standard_normal(shape) * 1e3).astype(np.float32)
    nan = x.copy().reshape(-1)
    nan[:: max(1, nan.size // 3)] = np.nan
    return [("random", x), ("zeros", np.zeros(shape, np.float32)), ("large", big),
            ("nan", nan.reshape(shape))]


def compare(ours: np.ndarray, ref: np.ndarray, what: str, rtol: float, atol: float,
            scale: float = 1.0) -> None:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs onnxruntime {ref.shape}"
    nan_o, nan_r = np.isnan(ours), np.isnan(ref)
    assert (nan_o == nan_r).all(), (f"{what}: NaN at {np.argwhere(nan_o != nan_r)[:5].tolist()} "
                                    f"differs from onnxruntime")
    inf_r = np.isinf(ref)
    assert (np.isinf(ours) == inf_r).all() and (ours[inf_r] == ref[inf_r]).all(), \
        f"{what}: infinities differ from onnxruntime"
    ok = ~(nan_r | inf_r)
    err = np.abs(ours[ok] - ref[ok])
    lim = atol * scale + rtol * np.abs(ref[ok])
    assert (err <= lim).all(), (f"{what}: max |err| {err.max():.3g} over the tolerance "
                                f"(rtol {rtol}, atol {atol * scale}); worst at "
                                f"{np.argmax(err - lim)}")


def check_model(model: bytes, feeds_shapes: dict[str, Sequence[int]], *, tol: str = "f32",
                edge: bool = True, seed: int = 0, scale: float = 1.0, compile_kwargs=None,
                edge_cases: Sequence[str] = ("random", "zeros", "large", "nan")) -> Any:
    """Compile `model`, compare every output with onnxruntime on random + edge inputs."""
    from edgert import sensor
    m = sensor.compile(model, **(compile_kwargs or {}))
    rng = np.random.default_rng(seed)
    names = list(feeds_shapes)
    cases: dict[str, dict[str, np.ndarray]] = {}
    per_input = {k: edge_inputs(v, rng, scale) for k, v in feeds_shapes.items()}
    for ci, (case, _) in enumerate(per_input[names[0]]):
        if case not in edge_cases or (not edge and case != "random"):
            continue
        cases[case] = {k: per_input[k][ci][1] for k in names}
    t = TOL[tol]
    for case, feeds in cases.items():
        ref = ort_run(model, feeds)
        out = m(*[feeds[k] for k in names])
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(ref)
        big = 1e3 if case == "large" else 1.0
        for i, (o, r) in enumerate(zip(outs, ref)):
            mag = max(1.0, float(np.nanmax(np.abs(r[np.isfinite(r)]))) if np.isfinite(r).any()
                      else 1.0)
            compare(o.copy(), r, f"{case} output {i}", t["rtol"], t["atol"],
                    scale=max(big, mag) if case == "large" else mag)
    return m


def qdq_conv_chain_model(rng: np.random.Generator, in_shape: Sequence[int] = (1, 5, 9, 8),
                         act: int = 3, pool: bool = False, mid: int = 21) -> bytes:
    """A QDQ float model (float in and out) as onnxruntime.quantization writes it: int8
    activations (act = onnx TensorProto.INT8 or UINT8 = 2) and per-channel int8 weights around
    a 3x3 conv -> pointwise -> depthwise + Relu -> strided grouped conv chain with channel counts
    that are no multiple of a vector (dtype="int8" turns it into QLinearConvs); pool: a
    GlobalAveragePool head on the last DequantizeLinear; mid: the pointwise and depthwise
    convs' channels (a multiple of 3)."""
    from onnx import helper
    qt = np.int8 if act == 3 else np.uint8
    lo, hi = (-128, 127) if act == 3 else (0, 255)
    C = in_shape[1]
    nodes, inits = [], {}

    def q_dq(t: str, scale: float, zp: int) -> str:
        inits[t + ".s"] = np.array(scale, np.float32)
        inits[t + ".z"] = np.array(zp, qt)
        nodes.append(helper.make_node("QuantizeLinear", [t, t + ".s", t + ".z"], [t + ".q"]))
        nodes.append(helper.make_node("DequantizeLinear", [t + ".q", t + ".s", t + ".z"],
                                      [t + ".dq"]))
        return t + ".dq"

    def conv(x: str, name: str, co: int, ci: int, k: Sequence[int], relu: bool = False,
             **attrs: Any) -> str:
        wq = rng.integers(-127, 128, (co, ci, *k)).astype(np.int8)
        wq.reshape(co, -1)[:, 0] = 127  # the int8 extremes in every filter
        wq.reshape(co, -1)[:, -1] = -127
        inits[name + ".w"] = wq
        inits[name + ".ws"] = rng.uniform(0.002, 0.02, co).astype(np.float32)
        inits[name + ".wz"] = np.zeros(co, np.int8)
        inits[name + ".b"] = (rng.standard_normal(co) * 0.3).astype(np.float32)
        nodes.append(helper.make_node("DequantizeLinear", [name + ".w", name + ".ws",
                                                           name + ".wz"], [name + ".wd"], axis=0))
        nodes.append(helper.make_node("Conv", [x, name + ".wd", name + ".b"], [name], **attrs))
        if relu:
            nodes.append(helper.make_node("Relu", [name], [name + ".r"]))
            return name + ".r"
        return name

    x = q_dq("x", 0.03, lo if act == 3 else 131)
    c1 = conv(x, "c1", 19, C, (3, 3), kernel_shape=[3, 3], pads=[1, 0, 2, 1])
    c2 = conv(q_dq(c1, 0.05, hi - 7), "c2", mid, 19, (1, 1), kernel_shape=[1, 1])
    c3 = conv(q_dq(c2, 0.04, 3 if act == 3 else 128), "c3", mid, 1, (3, 3), relu=True,
              kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=mid)
    c4 = conv(q_dq(c3, 0.02, lo + 2), "c4", 12, mid // 3, (3, 3), kernel_shape=[3, 3],
              pads=[1, 1, 1, 1], strides=[2, 2], group=3)
    y = q_dq(c4, 0.06, 5 if act == 3 else 120)
    nodes.append(helper.make_node("GlobalAveragePool" if pool else "Identity", [y], ["y"]))
    return make_model(nodes, {"x": in_shape}, {"y": None}, inits, opset=19)
