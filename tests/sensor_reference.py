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
