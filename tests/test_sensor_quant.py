"""edgert.sensor's int8 ops against onnxruntime: QuantizeLinear / DequantizeLinear, QLinearMatMul,
QLinearConv, MatMulInteger, ConvInteger on their own, and whole models quantized by
onnxruntime.quantization (QDQ and QOperator formats) compiled with dtype="f32" and dtype="int8".

The int8 tolerance: quantized outputs within one step (|q - q_ort| <= 1: a float product that lands
on a rounding tie may round either way), int32 outputs exact, float outputs of a quantized model
within two steps of the output's scale (the QDQ float simulation rounds the activations at the
same points, the accumulation order differs)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
from onnx import TensorProto, helper  # noqa: E402

from sensor_reference import make_model, ort_run  # noqa: E402

RNG = np.random.default_rng(21)
INT8_STEPS = 1        # quantized outputs
FLOAT_STEPS = 2       # float outputs of a quantized model, in units of the output scale


@pytest.fixture(scope="module", autouse=True)
def sensor_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("sensor-quant-cache")
    old = os.environ.get("EDGERT_SENSOR_CACHE")
    os.environ["EDGERT_SENSOR_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("EDGERT_SENSOR_CACHE", None)
    else:
        os.environ["EDGERT_SENSOR_CACHE"] = old


def _model(nodes, inputs, outputs, inits, in_types=None, out_types=None) -> bytes:
    g = helper.make_graph(
        nodes, "q",
        [helper.make_tensor_value_info(k, (in_types or {}).get(k, TensorProto.FLOAT), v)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, (out_types or {}).get(k, TensorProto.FLOAT), v)
         for k, v in outputs.items()],
        initializer=[helper.make_tensor(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape,
                                        v.reshape(-1).tolist()) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    return m.SerializeToString()


# The int8 kernels a test compares: the tiled ones the host picks, the portable i32 path (16 and
# 8 lanes), and the scalar twin.
KERNEL_ENV = ("EDGERT_SENSOR_INT8_DOT", "EDGERT_SENSOR_VECTOR_WIDTH", "EDGERT_SENSOR_KERNELS")
KERNEL_VARIANTS = {"tiled": {}, "generic": {"EDGERT_SENSOR_INT8_DOT": "generic"},
                   "generic8": {"EDGERT_SENSOR_INT8_DOT": "generic", "EDGERT_SENSOR_VECTOR_WIDTH": "8"},
                   "scalar": {"EDGERT_SENSOR_KERNELS": "scalar"}}


def _kernel_variants(monkeypatch, m: bytes, x: np.ndarray,
                     names: tuple[str, ...] = tuple(KERNEL_VARIANTS)) -> dict[str, np.ndarray]:
    """m(x) compiled under each named kernel variant's environment (the other variables unset)."""
    from edgert import sensor
    got = {}
    for name in names:
        for k in KERNEL_ENV:
            monkeypatch.delenv(k, raising=False)
        for k, v in KERNEL_VARIANTS[name].items():
            monkeypatch.setenv(k, v)
        got[name] = sensor.compile(m)(x).copy()
    return got


def _int_close(a: np.ndarray, b: np.ndarray, steps: int, what: str) -> None:
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert d.max() <= steps, f"{what}: max |q - q_ort| = {d.max()} > {steps}"


@pytest.mark.parametrize("qt", [np.int8, np.uint8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize(qt, per_axis):
    from edgert import sensor
    shape = (2, 4, 5)
    scale = (np.array([0.02, 0.05, 0.1, 0.03], np.float32) if per_axis
             else np.array(0.04, np.float32))
    zp = (np.array([0, 3, -2, 1] if qt == np.int8 else [128, 120, 130, 127], qt) if per_axis
          else np.array(5 if qt == np.int8 else 128, qt))
    ttype = helper.np_dtype_to_tensor_dtype(np.dtype(qt))
    q = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)],
               {"x": shape}, {"y": shape}, {"s": scale, "z": zp}, out_types={"y": ttype})
    dq = _model([helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)],
                {"x": shape}, {"y": shape}, {"s": scale, "z": zp}, in_types={"x": ttype})
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    x.reshape(-1)[:4] = [1e6, -1e6, 0.0, 0.02 * 2.5]  # saturation both ways, zero, a tie
    mq = sensor.compile(q)
    _int_close(mq(x).copy(), ort_run(q, {"x": x})[0], INT8_STEPS, "QuantizeLinear")
    xi = RNG.integers(np.iinfo(qt).min, np.iinfo(qt).max + 1, shape).astype(qt)
    got = sensor.compile(dq)(xi).copy()
    np.testing.assert_allclose(got, ort_run(dq, {"x": xi})[0], rtol=1e-6, atol=0)


def test_qlinear_matmul_and_matmul_integer(monkeypatch):
    from edgert import sensor
    a = RNG.integers(-128, 128, (3, 20)).astype(np.int8)
    b = RNG.integers(-128, 128, (20, 11)).astype(np.int8)
    inits = {"as": np.array(0.05, np.float32), "az": np.array(3, np.int8), "b": b,
             "bs": np.array(0.02, np.float32), "bz": np.array(-2, np.int8),
             "ys": np.array(0.8, np.float32), "yz": np.array(1, np.int8)}
    m = _model([helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
                                 ["y"])], {"a": (3, 20)}, {"y": (3, 11)}, inits,
               in_types={"a": TensorProto.INT8}, out_types={"y": TensorProto.INT8})
    got = sensor.compile(m)(a).copy()  # the tiled int8 GEMM (constant B)
    _int_close(got, ort_run(m, {"a": a})[0], INT8_STEPS, "QLinearMatMul")
    with monkeypatch.context() as mp:
        mp.setenv("EDGERT_SENSOR_KERNELS", "scalar")
        np.testing.assert_array_equal(got, sensor.compile(m)(a).copy())
    au = RNG.integers(0, 256, (4, 9)).astype(np.uint8)
    mi = _model([helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])],
                {"a": (4, 9), "b": (9, 6)}, {"y": (4, 6)},
                {"az": np.array(128, np.uint8), "bz": np.array(7, np.int8)},
                in_types={"a": TensorProto.UINT8, "b": TensorProto.INT8},
                out_types={"y": TensorProto.INT32})
    bi = RNG.integers(-128, 128, (9, 6)).astype(np.int8)
    got = sensor.compile(mi)(au, bi).copy()
    np.testing.assert_array_equal(got, ort_run(mi, {"a": au, "b": bi})[0])


@pytest.mark.parametrize("group,per_channel", [(1, False), (1, True), (4, True)])
def test_qlinear_conv_and_conv_integer(group, per_channel):
    from edgert import sensor
    C, CO = 4, 8
    x = RNG.integers(0, 256, (1, C, 9, 7)).astype(np.uint8)
    w = RNG.integers(-127, 128, (CO, C // group, 3, 3)).astype(np.int8)
    ws = (RNG.uniform(0.005, 0.02, CO).astype(np.float32) if per_channel
          else np.array(0.01, np.float32))
    inits = {"xs": np.array(0.03, np.float32), "xz": np.array(120, np.uint8), "w": w, "ws": ws,
             "wz": np.zeros(CO if per_channel else (), np.int8),
             "ys": np.array(0.25, np.float32), "yz": np.array(100, np.uint8),
             "b": RNG.integers(-500, 500, CO).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1],
                            group=group)
    m = _model([node], {"x": (1, C, 9, 7)}, {"y": (1, CO, 5, 7)}, inits,
               in_types={"x": TensorProto.UINT8}, out_types={"y": TensorProto.UINT8})
    _int_close(sensor.compile(m)(x).copy(), ort_run(m, {"x": x})[0], INT8_STEPS, "QLinearConv")
    if group == 1 and not per_channel:
        ci = _model([helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1])],
                    {"x": (1, C, 9, 7)}, {"y": (1, CO, 9, 7)},
                    {"w": w, "xz": np.array(120, np.uint8)}, in_types={"x": TensorProto.UINT8},
                    out_types={"y": TensorProto.INT32})
        np.testing.assert_array_equal(sensor.compile(ci)(x).copy(), ort_run(ci, {"x": x})[0])


# -- the tiled int8 kernels (int8_microkernels.py) against their scalar twin and onnxruntime --------

# name: (C, CO, group, spatial, kernel, strides, pads, dilations, batch); odd channel counts
# leave tails in every vector loop (16 or 8 lanes), 70 output channels run the 64-channel loop
QCONV_CASES = {
    "pointwise": (19, 37, 1, (5, 7), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "pointwise_wide": (64, 70, 1, (4, 9), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2),
    "conv3x3_s2_asym": (5, 17, 1, (9, 7), (3, 3), (2, 2), (1, 0, 2, 1), (1, 1), 2),
    "dilated": (6, 16, 1, (8, 8), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),
    "grouped": (12, 8, 4, (7, 6), (3, 3), (1, 2), (1, 1, 1, 1), (1, 1), 1),
    "depthwise_tail": (19, 19, 19, (6, 5), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "depthwise_s2": (40, 40, 40, (9, 9), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
    "depthwise_dilated": (16, 16, 16, (7, 7), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),
    # whole 64-channel chunks (or 16, 32 channels), 3-tap rows at column stride 1: the
    # column-pair kernel (AVX-512 VNNI) with an odd last column, even widths over two chunks, a
    # single column, taller strided and dilated kernels with asymmetric padding
    "depthwise_cp_odd": (64, 64, 64, (7, 5), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "depthwise_cp_even": (128, 128, 128, (5, 6), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "depthwise_cp_one": (64, 64, 64, (4, 1), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "depthwise_cp_tall": (64, 64, 64, (9, 6), (5, 3), (2, 1), (2, 1, 1, 0), (2, 1), 1),
    "depthwise_cp_16": (16, 16, 16, (6, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "depthwise_cp_32": (32, 32, 32, (5, 5), (3, 3), (1, 1), (0, 1, 2, 1), (1, 1), 1),
    "conv1d": (3, 24, 1, (40,), (7,), (1,), (3, 3), (1,), 1),
    "conv1d_dw_s2": (10, 10, 10, (13,), (5,), (2,), (2, 2), (1,), 1),
    "tall_kernel": (1, 64, 1, (49, 10), (10, 4), (2, 2), (5, 1, 5, 1), (1, 1), 1),
}


def _qconv_model(case: str, qt: type, edge_zp: bool, wzp: bool, rng: np.random.Generator
                 ) -> tuple[bytes, np.ndarray]:
    C, CO, G, sp, k, st, pads, dil, N = QCONV_CASES[case]
    info = np.iinfo(qt)
    x = rng.integers(info.min, info.max + 1, (N, C, *sp)).astype(qt)
    x.reshape(-1)[:4] = [info.min, info.max, info.min, info.max]
    w = rng.integers(-128, 128, (CO, C // G, *k)).astype(np.int8)
    w.reshape(CO, -1)[:, 0] = -128
    w.reshape(CO, -1)[:, -1] = 127
    xz = (info.max if case.endswith(("tail", "s2")) else info.min) if edge_zp \
        else int(rng.integers(info.min, info.max))
    yz = info.min if edge_zp else int(rng.integers(info.min, info.max))
    # nonzero weight zero points put w - w_zp outside int8: the VNNI kernel hands over to generic
    wz = rng.integers(-3, 4, CO).astype(np.int8) if wzp else np.zeros(CO, np.int8)
    K = (C // G) * int(np.prod(k))
    inits = {"xs": np.array(0.02, np.float32), "xz": np.array(xz, qt), "w": w,
             "ws": rng.uniform(0.5, 2.0, CO).astype(np.float32) / (K * 128),
             "wz": wz, "ys": np.array(0.011, np.float32), "yz": np.array(yz, qt),
             "b": rng.integers(-3000, 3000, CO).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=list(k), pads=list(pads), strides=list(st),
                            dilations=list(dil), group=G)
    out = [(sp[i] + pads[i] + pads[i + len(sp)] - dil[i] * (k[i] - 1) - 1) // st[i] + 1
           for i in range(len(sp))]
    ttype = helper.np_dtype_to_tensor_dtype(np.dtype(qt))
    m = _model([node], {"x": x.shape}, {"y": (N, CO, *out)}, inits, in_types={"x": ttype},
               out_types={"y": ttype})
    return m, x


@pytest.mark.parametrize("case", list(QCONV_CASES))
@pytest.mark.parametrize("qt,edge_zp,wzp", [(np.int8, True, False), (np.uint8, True, False),
                                            (np.int8, False, True), (np.uint8, False, False)])
def test_tiled_qlinear_conv_equals_scalar_twin_and_onnxruntime(case, qt, edge_zp, wzp,
                                                               monkeypatch):
    import zlib
    from edgert import sensor
    rng = np.random.default_rng(zlib.crc32(f"{case} {qt.__name__} {edge_zp} {wzp}".encode()))
    m, x = _qconv_model(case, qt, edge_zp, wzp, rng)
    ref = ort_run(m, {"x": x})[0]
    got = _kernel_variants(monkeypatch, m, x)
    for name in ("tiled", "generic", "generic8"):
        np.testing.assert_array_equal(got[name], got["scalar"], err_msg=f"{case} {name} vs scalar")
    _int_close(got["tiled"], ref, INT8_STEPS, f"{case} tiled vs onnxruntime")


def _random_qconv(rng: np.random.Generator, name: str, x: str, y: str, C: int, sp: list[int],
                  qt: type, inits: dict) -> tuple[Any, int, list[int]]:
    """A QLinearConv of random geometry (group, kernel, stride, dilation, asymmetric pads) on
    [1, C, *sp]; returns (node, CO, output spatial)."""
    nd = len(sp)
    kind = rng.choice(["dense", "grouped", "depthwise", "pointwise"])
    G = {"dense": 1, "pointwise": 1, "depthwise": C}.get(kind) or \
        int(rng.choice([g for g in (2, 3, 4) if C % g == 0] or [1]))
    CO = C if kind == "depthwise" else G * int(rng.integers(1, 40 // G + 2))
    out = [0]
    while min(out) < 1:  # a geometry with at least one output pixel
        k = [1] * nd if kind == "pointwise" else [int(rng.integers(1, 4)) for _ in range(nd)]
        st = [1] * nd if kind == "pointwise" else [int(rng.integers(1, 3)) for _ in range(nd)]
        dil = [1] * nd if kind == "pointwise" else [int(rng.integers(1, 3)) for _ in range(nd)]
        pads = [0] * (2 * nd) if kind == "pointwise" else [int(rng.integers(0, 3))
                                                            for _ in range(2 * nd)]
        out = [(sp[i] + pads[i] + pads[i + nd] - dil[i] * (k[i] - 1) - 1) // st[i] + 1
               for i in range(nd)]
    info = np.iinfo(qt)
    w = rng.integers(-128, 128, (CO, C // G, *k)).astype(np.int8)
    K = (C // G) * int(np.prod(k))
    inits.update({f"{name}.xs": np.array(0.05, np.float32),
                  f"{name}.xz": np.array(int(rng.integers(info.min, info.max + 1)), qt),
                  f"{name}.w": w,
                  f"{name}.ws": rng.uniform(0.3, 3.0, CO).astype(np.float32) / (K * 128),
                  f"{name}.wz": np.zeros(CO, np.int8),
                  f"{name}.ys": np.array(0.05, np.float32),
                  f"{name}.yz": np.array(int(rng.integers(info.min, info.max + 1)), qt),
                  f"{name}.b": rng.integers(-5000, 5000, CO).astype(np.int32)})
    node = helper.make_node("QLinearConv", [x] + [f"{name}.{t}" for t in
                                                  ("xs", "xz", "w", "ws", "wz", "ys", "yz", "b")],
                            [y], kernel_shape=k, strides=st, dilations=dil, pads=pads, group=G)
    return node, CO, out


# 133 and 144: a 33- and a 1-channel channels-last output on the 8-lane kernels, where LLVM
# made a 4-byte store of a one-lane llvm.masked.store (the partial stores are plain ones now)
@pytest.mark.parametrize("seed", list(range(12)) + [133, 144])
def test_random_qlinear_conv_pairs(seed, monkeypatch):
    """Two QLinearConvs of random geometry in a row (the first writes channels-last int8 for the
    second), batch 1 or 2: the tiled kernels, the generic 8-lane ones and the scalar twin give the same bytes,
    within one step of onnxruntime."""
    from edgert import sensor
    rng = np.random.default_rng(1000 + seed)
    qt = np.int8 if seed % 2 else np.uint8
    sp = [int(rng.integers(3, 12)) for _ in range(1 if seed % 4 == 3 else 2)]
    C = int(rng.integers(1, 36))
    inits: dict = {}
    n1, c1, sp1 = _random_qconv(rng, "a", "x", "h", C, sp, qt, inits)
    n2, c2, sp2 = _random_qconv(rng, "b", "h", "y", c1, sp1, qt, inits)
    ttype = helper.np_dtype_to_tensor_dtype(np.dtype(qt))
    nb = 2 if seed % 3 == 2 else 1  # a batch of two now and then
    g = helper.make_graph(
        [n1, n2], "q", [helper.make_tensor_value_info("x", ttype, (nb, C, *sp))],
        [helper.make_tensor_value_info("y", ttype, (nb, c2, *sp2))],
        initializer=[helper.make_tensor(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape,
                                        v.reshape(-1).tolist()) for k, v in inits.items()])
    mm = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    mm.ir_version = 9
    m = mm.SerializeToString()
    info = np.iinfo(qt)
    x = rng.integers(info.min, info.max + 1, (nb, C, *sp)).astype(qt)
    got = _kernel_variants(monkeypatch, m, x, ("tiled", "generic8", "scalar"))
    what = f"{n1.attribute} {n2.attribute} C={C} sp={sp}"
    np.testing.assert_array_equal(got["tiled"], got["scalar"], err_msg=what)
    np.testing.assert_array_equal(got["generic8"], got["scalar"], err_msg=what)
    _int_close(got["tiled"], ort_run(m, {"x": x})[0], INT8_STEPS, what)


@pytest.mark.parametrize("mult", [0.5, 1.5])  # the requantization's two AVX-512 forms
@pytest.mark.parametrize("group", [1, 24])  # the GEMM and the depthwise kernel
@pytest.mark.parametrize("qt", [np.int8, np.uint8])
def test_tiled_qlinear_conv_rounds_ties_to_even(group, qt, mult, monkeypatch):
    """A multiplier of 1/2 (or 3/2) puts every odd sum on a rounding tie: half to even, as the
    scalar twin and onnxruntime (MLAS) do, also where the result saturates."""
    from edgert import sensor
    rng = np.random.default_rng(17)
    info = np.iinfo(qt)
    C = CO = 24
    x = rng.integers(info.min, info.max + 1, (1, C, 5, 6)).astype(qt)
    w = rng.integers(-3, 4, (CO, C // group, 3, 3)).astype(np.int8)
    inits = {"xs": np.array(mult, np.float32), "xz": np.array(info.min + 1, qt), "w": w,
             "ws": np.ones(CO, np.float32), "wz": np.zeros(CO, np.int8),
             "ys": np.array(1.0, np.float32), "yz": np.array(info.max - 100, qt),
             "b": rng.integers(-9, 10, CO).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    ttype = helper.np_dtype_to_tensor_dtype(np.dtype(qt))
    m = _model([node], {"x": x.shape}, {"y": (1, CO, 5, 6)}, inits, in_types={"x": ttype},
               out_types={"y": ttype})
    got = sensor.compile(m)(x).copy()
    ref = ort_run(m, {"x": x})[0]
    assert 0 < (got == info.max).mean() < 0.8  # saturated and in-range outputs
    np.testing.assert_array_equal(got, ref)
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")
    np.testing.assert_array_equal(got, sensor.compile(m)(x).copy())


@pytest.mark.parametrize("M,K,N,transB", [(1, 19, 37, 1), (5, 130, 70, 0), (3, 8, 5, 1)])
@pytest.mark.parametrize("qt,edge_zp,wzp", [(np.int8, True, False), (np.uint8, False, True)])
def test_qgemm_equals_scalar_twin_and_onnxruntime(M, K, N, transB, qt, edge_zp, wzp,
                                                  monkeypatch):
    """com.microsoft QGemm (what dtype="int8" makes of DequantizeLinear -> Gemm -> Quantize-
    Linear) on the tiled GEMM: odd sizes, int8 extremes, zero points at the edges, per-column
    weight zero points (outside int8 after the shift: the generic kernel) and scales."""
    import zlib
    from edgert import sensor
    rng = np.random.default_rng(zlib.crc32(f"{M} {K} {N} {qt.__name__} {wzp}".encode()))
    info = np.iinfo(qt)
    a = rng.integers(info.min, info.max + 1, (M, K)).astype(qt)
    a.reshape(-1)[:2] = [info.min, info.max]
    b = rng.integers(-128, 128, (N, K) if transB else (K, N)).astype(np.int8)
    b.reshape(-1)[:2] = [-128, 127]
    inits = {"as": np.array(0.02, np.float32),
             "az": np.array(info.min if edge_zp else int(rng.integers(info.min, info.max)), qt),
             "b": b, "bs": rng.uniform(0.5, 2.0, N).astype(np.float32) / (K * 128),
             "bz": rng.integers(-3, 4, N).astype(np.int8) if wzp else np.zeros(N, np.int8),
             "c": rng.integers(-3000, 3000, N).astype(np.int32),
             "ys": np.array(0.009, np.float32),
             "yz": np.array(info.max if edge_zp else int(rng.integers(info.min, info.max)), qt)}
    node = helper.make_node("QGemm", ["a", "as", "az", "b", "bs", "bz", "c", "ys", "yz"], ["y"],
                            domain="com.microsoft", transB=transB)
    ttype = helper.np_dtype_to_tensor_dtype(np.dtype(qt))
    g = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("a", ttype, (M, K))],
        [helper.make_tensor_value_info("y", ttype, (M, N))],
        initializer=[helper.make_tensor(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape,
                                        v.reshape(-1).tolist()) for k, v in inits.items()])
    mm = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19),
                                             helper.make_opsetid("com.microsoft", 1)])
    mm.ir_version = 9
    m = mm.SerializeToString()
    ref = ort_run(m, {"a": a})[0]
    got = _kernel_variants(monkeypatch, m, a)
    for name in ("tiled", "generic", "generic8"):
        np.testing.assert_array_equal(got[name], got["scalar"], err_msg=f"{name} vs scalar")
    _int_close(got["tiled"], ref, INT8_STEPS, "QGemm vs onnxruntime")


def test_int8_gemm_pattern_becomes_qgemm(monkeypatch):
    """DequantizeLinear -> Gemm (transB, per-channel weights, int32 bias) -> Relu ->
    QuantizeLinear runs as one QGemm with the ReLU as a clamp at the zero point."""
    from edgert import sensor
    rng = np.random.default_rng(8)
    K, N = 40, 21
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], axis=0),
             helper.make_node("Gemm", ["xd", "wd", "bd"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    ws = rng.uniform(0.002, 0.01, N).astype(np.float32)
    inits = {"xs": np.array(0.03, np.float32), "xz": np.array(-5, np.int8),
             "w": rng.integers(-127, 128, (N, K)).astype(np.int8), "ws": ws,
             "wz": np.zeros(N, np.int8), "bq": rng.integers(-2000, 2000, N).astype(np.int32),
             "bs": (ws * 0.03).astype(np.float32), "bz": np.zeros(N, np.int32),
             "ys": np.array(0.02, np.float32), "yz": np.array(-20, np.int8)}
    model = _model(nodes, {"x": (2, K)}, {"y": (2, N)}, inits)
    m = sensor.compile(model, dtype="int8")
    assert m.info.ops.get("QGemm") == 1 and "Gemm" not in m.info.ops, m.info.ops
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")
    ms = sensor.compile(model, dtype="int8")
    for scale in (1.0, 100.0):
        x = (rng.standard_normal((2, K)) * scale).astype(np.float32)
        got = m(x).copy()
        np.testing.assert_array_equal(got, ms(x).copy())
        assert got.min() >= 0  # the ReLU
        err = np.abs(got - ort_run(model, {"x": x})[0]).max()
        assert err <= INT8_STEPS * 0.02 + 1e-6, err


@pytest.mark.parametrize("act,pool,mid", [(3, False, 21), (3, True, 21), (2, False, 21),
                                          (2, True, 21), (3, False, 192), (2, True, 192)])
def test_int8_conv_chain_channels_last(act, pool, mid, monkeypatch):
    """3x3 -> pointwise -> depthwise -> grouped QLinearConvs keep channels-last int8 activations
    between them (quant.choose_layouts), and into a DequantizeLinear -> GlobalAveragePool head;
    outputs equal the scalar NCHW twin's and are within one step of onnxruntime's (act: int8 or
    uint8 activations; mid=192: three 64-channel chunks, the column-pair depthwise kernel)."""
    from edgert import sensor
    from sensor_reference import qdq_conv_chain_model
    from edgert.sensor.graph import read_graph
    from edgert.sensor.quant import prepare, choose_layouts
    rng = np.random.default_rng(5 + act)
    model = qdq_conv_chain_model(rng, act=act, pool=pool, mid=mid)
    g = read_graph(None, None, data=model, keep=frozenset({"DequantizeLinear"}))
    prepare(g, "int8")
    choose_layouts(g)
    convs = [n for n in g.nodes if n.op == "QLinearConv"]
    assert len(convs) == 4 and [bool(n.attrs.get("_nhwc_out")) for n in convs] == \
        [True, True, True, pool], [n.attrs for n in convs]
    assert [bool(n.attrs.get("_nhwc_in")) for n in g.nodes if n.op == "GlobalAveragePool"] == \
        ([True] if pool else [])
    m = sensor.compile(model, dtype="int8")
    assert m.info.ops.get("QLinearConv") == 4, m.info.ops
    # the generic kernels with 8 lanes (what the aarch64 AOT build runs), then the scalar twin
    monkeypatch.setenv("EDGERT_SENSOR_INT8_DOT", "generic")
    monkeypatch.setenv("EDGERT_SENSOR_VECTOR_WIDTH", "8")
    m8 = sensor.compile(model, dtype="int8")
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")
    ms = sensor.compile(model, dtype="int8")
    step = 0.06
    for case in ("random", "zeros", "large"):
        x = {"random": rng.standard_normal((1, 5, 9, 8)), "zeros": np.zeros((1, 5, 9, 8)),
             "large": rng.standard_normal((1, 5, 9, 8)) * 100}[case].astype(np.float32)
        got, want = m(x).copy(), ms(x).copy()
        for name, v in (("tiled", got), ("generic8", m8(x).copy())):
            if pool:  # the pool sums channels-last: the same terms in another order
                np.testing.assert_allclose(v, want, rtol=1e-6, atol=1e-6, err_msg=f"{case} {name}")
            else:
                np.testing.assert_array_equal(v, want, err_msg=f"{case} {name}")
        err = np.abs(got - ort_run(model, {"x": x})[0]).max()
        assert err <= INT8_STEPS * step + 1e-6, f"{case}: {err} > {INT8_STEPS} x {step}"


# -- whole models quantized by onnxruntime ---------------------------------------------------------

def _float_model() -> bytes:
    rng = np.random.default_rng(3)

    def w(*s):
        return (rng.standard_normal(s) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[5], pads=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3], pads=[1, 1],
                              strides=[2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Reshape", ["r2", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["y"])]
    return make_model(nodes, {"x": (1, 3, 32)}, {"y": (1, 5)},
                      {"w1": w(8, 3, 5), "b1": w(8), "w2": w(12, 8, 3), "b2": w(12),
                       "shape": np.array([1, 12 * 16], np.int64), "w3": w(12 * 16, 5)}, opset=17)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, bytes]:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    d = tmp_path_factory.mktemp("q")
    (d / "f.onnx").write_bytes(_float_model())

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(9)
            self.data = iter([{"x": rng.standard_normal((1, 3, 32)).astype(np.float32)}
                              for _ in range(16)])

        def get_next(self):
            return next(self.data, None)
    out = {}
    for fmt in ("qdq", "qoperator"):
        quantize_static(str(d / "f.onnx"), str(d / f"{fmt}.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=["Conv", "MatMul"])
        out[fmt] = (d / f"{fmt}.onnx").read_bytes()
    return out


def _output_scale(model: bytes) -> float:
    import onnx
    from onnx import numpy_helper
    m = onnx.load_from_string(model)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:  # the last DequantizeLinear's scale is the output's step
        if n.op_type == "DequantizeLinear" and n.output[0] == m.graph.output[0].name:
            return float(inits[n.input[1]])
    return float(max(v for k, v in inits.items() if "scale" in k and v.size == 1))


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("dtype", ["f32", "int8"])
def test_quantized_model_matches_onnxruntime(quantized, fmt, dtype):
    from edgert import sensor
    model = quantized[fmt]
    m = sensor.compile(model, dtype=dtype)
    if dtype == "int8" and fmt == "qdq":
        assert "QLinearConv" in m.info.ops and "QLinearMatMul" in m.info.ops, m.info.ops
    step = _output_scale(model)
    rng = np.random.default_rng(4)
    for case in ("random", "zeros", "large"):
        x = {"random": rng.standard_normal((1, 3, 32)), "zeros": np.zeros((1, 3, 32)),
             "large": rng.standard_normal((1, 3, 32)) * 100}[case].astype(np.float32)
        ref = ort_run(model, {"x": x})[0]
        got = m(x).copy()
        err = np.abs(got - ref).max()
        assert err <= FLOAT_STEPS * step + 1e-6, f"{fmt}/{dtype}/{case}: {err} > {FLOAT_STEPS} x {step}"


# -- benchmarks/sensor_bench.py's int8 part ------------------------------------------------------

def _sensor_bench():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import sensor_bench
    return sensor_bench


def test_bench_int8_part_agrees_and_records_failures(tmp_path, monkeypatch):
    bench = _sensor_bench()
    f32 = tmp_path / "f.onnx"
    f32.write_bytes(_float_model())
    r = bench.int8_compare({"path": str(f32)}, iters=200, out=tmp_path, seconds=0.01)
    assert "error" not in r, r.get("error")
    assert r["iters"] == 200 and r["ops"].get("QLinearConv") == 2, r["ops"]
    for eng in ("edgert_int8", "onnxruntime_qdq", "onnxruntime_f32", "edgert_f32"):
        assert r[eng]["p50_us"] > 0 and r[eng]["cpu_us"] > 0
    ag = r["agreement"]["y"]
    # the step is the scale of the DequantizeLinear that makes the output, read independently
    assert ag["step"] == pytest.approx(_output_scale((tmp_path / "f.qdq.onnx").read_bytes()))
    assert ag["max_steps"] <= FLOAT_STEPS and ag["top1_agree"] is not None
    assert ag["max_abs_ort_qdq_vs_f32"] > 0  # the reference itself is quantized
    # a model that does not compile in int8 is a result, with its typed error, not a crash
    from edgert import sensor
    from edgert.errors import UnsupportedModelError

    def refuse(*a, **k):
        raise UnsupportedModelError("node 'n' (Foo): op Foo is not supported")
    monkeypatch.setattr(sensor, "compile", refuse)
    r = bench.int8_compare({"path": str(f32)}, iters=200, out=tmp_path)
    assert r["error"] == "UnsupportedModelError: node 'n' (Foo): op Foo is not supported"
    assert r["error_typed"] is True and "edgert_int8" not in r
