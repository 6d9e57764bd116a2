"""Every op of edgert.sensor against onnxruntime: one small graph per op and attribute case, on
random inputs and on edge values (zeros, large magnitudes, NaN), within the f32 tolerance of
sensor_reference.TOL. The compile cache is one temp dir per test session."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
from onnx import helper  # noqa: E402

from sensor_reference import check_model, make_model  # noqa: E402

RNG = np.random.default_rng(1234)


def w(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


@pytest.fixture(scope="session", autouse=True)
def sensor_cache(tmp_path_factory):
    import os
    d = tmp_path_factory.mktemp("sensor-cache")
    old = os.environ.get("EDGERT_SENSOR_CACHE")
    os.environ["EDGERT_SENSOR_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("EDGERT_SENSOR_CACHE", None)
    else:
        os.environ["EDGERT_SENSOR_CACHE"] = old


# -- Gemm / MatMul -------------------------------------------------------------------------------

@pytest.mark.parametrize("M,K,N,ta,tb,alpha,beta,cshape", [
    (1, 64, 32, 0, 0, 1.0, 1.0, "n"),      # the MLP layer (axpy form)
    (1, 37, 5, 0, 1, 1.0, 1.0, "n"),       # small N: dot-product form, PyTorch's transB
    (3, 16, 20, 1, 0, 0.5, 2.0, "mn"),
    (2, 9, 3, 1, 1, 1.0, 0.0, "1"),
    (4, 8, 17, 0, 0, 1.0, 1.0, "none"),
    (7, 19, 45, 0, 1, 1.0, 1.0, "n"),      # row tail (7 = 4 + 3), vector and scalar column tails
    # one row (microkernels._matvec): an overlapping last vector and k split into 4 partial sums
    # with a remainder (19 = 4 * 4 + 3), written out; a k loop (301 = 4 * 75 + 1); a row wider
    # than 24 vectors (vectors in groups)
    (1, 19, 45, 0, 0, 1.0, 1.0, "n"),
    (1, 301, 70, 0, 1, 1.0, 1.0, "n"),
    (1, 6, 397, 0, 0, 1.0, 1.0, "none"),
])
def test_gemm(M, K, N, ta, tb, alpha, beta, cshape):
    A = (K, M) if ta else (M, K)
    B = w(*((N, K) if tb else (K, N)))
    inits = {"B": B}
    ins = ["a", "B"]
    if cshape != "none":
        inits["C"] = w(*{"n": (N,), "mn": (M, N), "1": (1,)}[cshape])
        ins.append("C")
    node = helper.make_node("Gemm", ins, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    check_model(make_model([node], {"a": A}, {"y": (M, N)}, inits), {"a": A})


def test_gemm_runtime_b_and_c():
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=1.5)
    check_model(make_model([node], {"a": (2, 6), "b": (5, 6), "c": (5,)}, {"y": (2, 5)}),
                {"a": (2, 6), "b": (5, 6), "c": (5,)})


@pytest.mark.parametrize("ashape,bshape,const_b", [
    ((1, 40), (40, 24), True),
    ((3, 7), (7, 2), True),
    ((2, 3, 5), (2, 5, 4), False),        # batched, both at run time
    ((2, 3, 5), (5, 6), True),            # batched A, shared constant B
    ((4, 1, 3, 5), (2, 5, 3), False),     # broadcast batch dims
    ((5,), (5, 3), True),                 # 1-D left operand
    ((2, 5), (5,), False),                # 1-D right operand
])
def test_matmul(ashape, bshape, const_b):
    inits = {"b": w(*bshape)} if const_b else {}
    ins = {"a": ashape} if const_b else {"a": ashape, "b": bshape}
    out = np.matmul(np.zeros(ashape), np.zeros(bshape)).shape
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    check_model(make_model([node], ins, {"y": out}, inits), ins)


# -- elementwise ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("ashape,bshape", [((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)),
                                           ((1, 3, 1), (2, 1, 4)), ((5,), (5,))])
def test_binary(op, ashape, bshape):
    out = np.broadcast_shapes(ashape, bshape)
    node = helper.make_node(op, ["a", "b"], ["y"])
    check_model(make_model([node], {"a": ashape, "b": bshape}, {"y": out}),
                {"a": ashape, "b": bshape})


def test_binary_constant_operands():
    nodes = [helper.make_node("Mul", ["x", "s"], ["t"]), helper.make_node("Sub", ["c", "t"], ["y"])]
    check_model(make_model(nodes, {"x": (3, 8)}, {"y": (3, 8)},
                           {"s": np.array(2.5, np.float32), "c": w(8)}), {"x": (3, 8)})


UNARY = [("Relu", {}, 17), ("LeakyRelu", {"alpha": 0.2}, 17), ("Sigmoid", {}, 17),
         ("Tanh", {}, 17), ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20),
         ("HardSwish", {}, 17), ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}, 17),
         ("Exp", {}, 17), ("Erf", {}, 17), ("Neg", {}, 17), ("Abs", {}, 17), ("Elu", {}, 17),
         ("Softplus", {}, 17), ("Sqrt", {}, 17)]


@pytest.mark.parametrize("op,attrs,opset", UNARY, ids=[f"{u[0]}-{i}" for i, u in enumerate(UNARY)])
def test_unary(op, attrs, opset):
    shape = (3, 37)  # an odd inner length: vector body plus scalar tail
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    model = make_model([node], {"x": shape}, {"y": shape}, opset=opset)
    if op == "Sqrt":  # keep it real: Sqrt(|x|)
        model = make_model([helper.make_node("Abs", ["x"], ["a"]),
                            helper.make_node(op, ["a"], ["y"])], {"x": shape}, {"y": shape})
    check_model(model, {"x": shape}, tol="f32_transcendental", scale=3.0)


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.0, None), (None, 0.5)])
def test_clip(lo, hi):
    inits, ins = {}, ["x"]
    ins.append("lo" if lo is not None else "")
    ins.append("hi" if hi is not None else "")
    if lo is not None:
        inits["lo"] = np.array(lo, np.float32)
    if hi is not None:
        inits["hi"] = np.array(hi, np.float32)
    while ins and ins[-1] == "":
        ins.pop()
    node = helper.make_node("Clip", ins, ["y"])
    check_model(make_model([node], {"x": (4, 9)}, {"y": (4, 9)}, inits), {"x": (4, 9)}, scale=4)


# -- convolution ---------------------------------------------------------------------------------

CONV2D = [
    # cin, cout, H, W, k, stride, pad, dil, group
    (3, 8, 12, 12, 3, 1, 1, 1, 1),      # plane-major? W=12 < 16 -> pixel-major
    (4, 6, 20, 20, 3, 1, 1, 1, 1),      # plane-major (OW >= 16, stride 1)
    (4, 16, 9, 11, 3, 2, 1, 1, 1),      # strided, pixel-major
    (8, 8, 10, 10, 3, 1, 1, 1, 8),      # depthwise
    (8, 16, 10, 10, 3, 2, 1, 1, 8),     # depthwise with multiplier 2, strided
    (6, 4, 11, 13, 3, 1, 2, 2, 2),      # grouped + dilated
    (16, 24, 4, 4, 1, 1, 0, 1, 1),      # pointwise on a small plane
    (1, 8, 49, 10, 3, 2, 1, 1, 1),      # the DS-CNN first layer shape
    (16, 32, 3, 3, 3, 1, 1, 1, 1),      # 9 pixels, 32 channels: vectors over channels
    (32, 20, 2, 2, 1, 1, 0, 1, 1),      # pointwise, vectors over channels, channel tail
    (12, 12, 7, 5, 3, 2, 1, 2, 12),     # depthwise, strided + dilated, channel tail
]


@pytest.mark.parametrize("cin,cout,H,W,k,s,p,d,g", CONV2D)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(cin, cout, H, W, k, s, p, d, g, bias):
    wt = w(cout, cin // g, k, k)
    inits = {"w": wt}
    ins = ["x", "w"]
    if bias:
        inits["b"] = w(cout)
        ins.append("b")
    oh = (H + 2 * p - d * (k - 1) - 1) // s + 1
    ow = (W + 2 * p - d * (k - 1) - 1) // s + 1
    node = helper.make_node("Conv", ins, ["y"], kernel_shape=[k, k], strides=[s, s],
                            pads=[p, p, p, p], dilations=[d, d], group=g)
    check_model(make_model([node], {"x": (1, cin, H, W)}, {"y": (1, cout, oh, ow)}, inits),
                {"x": (1, cin, H, W)})


# depthwise-separable chains: the activations between the convs stay channels-last
# (ops.choose_layouts); channel counts hit the vector tails (5 < 8 lanes: scalar; 12, 20, 24:
# an overlapping last vector; 32, 64: whole 16-float vectors), stride 2, dilation 2, asymmetric
# padding, a 3x1 kernel, ReLU6 and ReLU tails, and a GlobalAveragePool reading channels-last
DSCONV_CHAINS = {
    # first conv (cin, cout, kernel, stride, pads), then blocks (cout, dw stride, dw dilation)
    "dscnn": ((1, 20, (5, 3), (2, 2), (2, 1, 2, 1)), [(24, 1, 1), (24, 2, 1), (12, 1, 2)], (13, 7)),
    "mobilenet": ((3, 16, (3, 3), (2, 2), (1, 1, 1, 1)), [(32, 2, 1), (64, 1, 1)], (18, 15)),
    "narrow": ((2, 5, (3, 3), (1, 1), (0, 1, 1, 0)), [(7, 1, 1), (5, 2, 2)], (9, 8)),
}


def _dsconv_chain(case: str, gap: bool) -> tuple[bytes, tuple[int, ...]]:
    (cin, c, k, s, pads), blocks, (H, W) = DSCONV_CHAINS[case]
    inits = {"w0": w(c, cin, *k), "b0": w(c)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a0"], kernel_shape=list(k),
                              strides=list(s), pads=list(pads)),
             helper.make_node("Clip", ["a0", "lo", "hi"], ["r0"])]
    inits["lo"], inits["hi"] = np.array(0, np.float32), np.array(6, np.float32)
    t = "r0"
    for i, (co, st, d) in enumerate(blocks):
        inits[f"dw{i}"], inits[f"db{i}"] = w(c, 1, 3, 3), w(c)
        inits[f"pw{i}"] = w(co, c, 1, 1)
        nodes += [helper.make_node("Conv", [t, f"dw{i}", f"db{i}"], [f"d{i}"], kernel_shape=[3, 3],
                                   strides=[st, st], pads=[d, d, d, d], dilations=[d, d], group=c),
                  helper.make_node("Relu", [f"d{i}"], [f"dr{i}"]),
                  helper.make_node("Conv", [f"dr{i}", f"pw{i}"], [f"p{i}"], kernel_shape=[1, 1]),
                  helper.make_node("Relu", [f"p{i}"], [f"pr{i}"])]
        t, c = f"pr{i}", co
    if gap:
        nodes.append(helper.make_node("GlobalAveragePool", [t], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [t], ["y"]))
    import onnx
    shapes = onnx.shape_inference.infer_shapes(onnx.load_from_string(
        make_model(nodes, {"x": (1, cin, H, W)}, {"y": None}, inits)))
    out = [d.dim_value for d in shapes.graph.output[0].type.tensor_type.shape.dim]
    return make_model(nodes, {"x": (1, cin, H, W)}, {"y": out}, inits), (1, cin, H, W)


@pytest.mark.parametrize("case", sorted(DSCONV_CHAINS))
@pytest.mark.parametrize("gap", [True, False])
def test_depthwise_separable_chain_channels_last(case, gap, monkeypatch):
    from edgert.sensor import compiler, graph, optimize, ops
    model, shape = _dsconv_chain(case, gap)
    # the chain really runs channels-last: every conv but the first reads it, every conv but
    # the last (when it is the graph output) writes it
    g = graph.read_graph(None, None, data=model)
    optimize.optimize(g)
    ops.choose_layouts(g)
    convs = [n for n in g.nodes if n.op == "Conv"]
    assert all(n.attrs.get("_nhwc_in") for n in convs[1:])
    assert all(n.attrs.get("_nhwc_out") for n in convs[:-1])
    assert bool(convs[-1].attrs.get("_nhwc_out")) == gap
    m = check_model(model, {"x": shape})
    x = RNG.standard_normal(shape).astype(np.float32)
    tiled = m(x).copy()
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")  # the plain NCHW loops
    np.testing.assert_allclose(tiled, compiler.compile(model)(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cin,cout,L,k,s,p,d,g", [
    (3, 8, 128, 5, 1, 2, 1, 1), (8, 8, 64, 3, 2, 1, 1, 8), (4, 16, 33, 3, 1, 0, 2, 1),
    (6, 6, 40, 7, 3, 3, 1, 3),
    # grouped, stride 1: the implicit im2col row table per group (the gesture CNN's last conv),
    # and an odd length (a vector tail over pixels) with dilation and padding
    (24, 32, 32, 3, 1, 1, 1, 8), (6, 4, 19, 3, 1, 2, 2, 2)])
def test_conv1d(cin, cout, L, k, s, p, d, g):
    ol = (L + 2 * p - d * (k - 1) - 1) // s + 1
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k], strides=[s],
                            pads=[p, p], dilations=[d], group=g)
    check_model(make_model([node], {"x": (1, cin, L)}, {"y": (1, cout, ol)},
                           {"w": w(cout, cin // g, k), "b": w(cout)}), {"x": (1, cin, L)})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[4, 3], strides=[2, 1],
                            auto_pad=auto_pad)
    oh, ow = (5, 9) if auto_pad != "VALID" else (4, 7)
    check_model(make_model([node], {"x": (2, 3, 10, 9)}, {"y": (2, 5, oh, ow)},
                           {"w": w(5, 3, 4, 3)}), {"x": (2, 3, 10, 9)})


# -- pooling -------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("shape,k,s,p,extra", [
    ((1, 3, 12, 12), [2, 2], [2, 2], [0, 0, 0, 0], {}),
    ((1, 4, 11, 9), [3, 3], [2, 2], [1, 1, 1, 1], {}),
    ((2, 2, 10, 7), [3, 2], [2, 2], [1, 0, 1, 1], {"ceil_mode": 1}),
    ((1, 3, 9, 9), [3, 3], [1, 1], [1, 1, 1, 1], {"count_include_pad": 1}),
    ((1, 5, 40), [4], [2], [1, 1], {}),
])
def test_pool(op, shape, k, s, p, extra):
    if op == "MaxPool":
        extra = {k_: v for k_, v in extra.items() if k_ != "count_include_pad"}
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=k, strides=s, pads=p, **extra)
    model = make_model([node], {"x": shape}, {"y": None})
    _check_pool(model, shape, op)


def _check_pool(model, shape, op):
    if op not in ("MaxPool", "GlobalMaxPool"):
        check_model(model, {"x": shape})
        return
    # onnxruntime's max pooling has no single NaN rule: on [3, 2, 1, NaN] with kernel 3 and pads
    # 1 its 2-D kernel returns [3, 3, NaN, -3.4e38] (the window [1, NaN, pad] loses the 1), its
    # 1-D kernel returns [3, 3, 2, 1] (NaN ignored). edgert propagates NaN: a window holding a
    # NaN gives NaN. The reference for that case is onnxruntime on the input with NaN replaced
    # by 0, with NaN put back wherever onnxruntime's max pool of the NaN indicator is 1.
    m = check_model(model, {"x": shape}, edge_cases=("random", "zeros", "large"))
    from sensor_reference import compare, ort_run
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[:: max(1, x.size // 5)] = np.nan
    ref = ort_run(model, {"x": np.nan_to_num(x, nan=0.0)})[0]
    hit = ort_run(model, {"x": np.isnan(x).astype(np.float32)})[0] > 0.5
    ref[hit] = np.nan
    compare(m(x).copy(), ref, "nan", 0.0, 0.0)


def test_maxpool_dilated():
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])
    _check_pool(make_model([node], {"x": (1, 2, 8, 8)}, {"y": None}), (1, 2, 8, 8), "MaxPool")


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(1, 8, 5, 5), (2, 3, 17)])
def test_global_pool(op, shape):
    node = helper.make_node(op, ["x"], ["y"])
    _check_pool(make_model([node], {"x": shape}, {"y": None}), shape, op)


# -- BatchNormalization (standalone and folded) ---------------------------------------------------

def _bn_inits(c: int) -> dict:
    return {"g": w(c) + 1, "be": w(c), "mu": w(c), "var": np.abs(w(c)) + 0.5}


def test_batchnorm_standalone():
    node = helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"],
                            epsilon=1e-3)
    check_model(make_model([node], {"x": (1, 6, 5, 4)}, {"y": (1, 6, 5, 4)}, _bn_inits(6)),
                {"x": (1, 6, 5, 4)})


def test_batchnorm_folded_into_conv_and_gemm():
    from edgert import sensor
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3], pads=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "w2"], ["z"], transB=1),
             helper.make_node("BatchNormalization", ["z", "g2", "be2", "mu2", "var2"], ["y"])]
    inits = {"w": w(6, 2, 3), "b": w(6), "w2": w(5, 6 * 16), **_bn_inits(6)}
    inits.update({k + "2": v for k, v in _bn_inits(5).items()})
    model = make_model(nodes, {"x": (1, 2, 16)}, {"y": (1, 5)}, inits)
    m = check_model(model, {"x": (1, 2, 16)})
    assert "BatchNormalization" not in m.info.ops, m.info.ops
    assert set(m.info.ops) == {"Conv", "Flatten", "Gemm"}, m.info.ops  # Relu fused into Conv
    assert isinstance(m, sensor.compile(model).__class__)


# -- shape and data movement -----------------------------------------------------------------------

def test_reshape_flatten_squeeze_unsqueeze_transpose():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
             helper.make_node("Squeeze", ["u", "ax"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"], axis=1),
             helper.make_node("Relu", ["f"], ["y"])]
    inits = {"shape": np.array([2, -1, 5], np.int64), "ax": np.array([1], np.int64)}
    check_model(make_model(nodes, {"x": (2, 5, 3, 4)}, {"y": (2, 60)}, inits, opset=13),
                {"x": (2, 5, 3, 4)})


def test_reshape_is_graph_output():
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["y"])]
    check_model(make_model(nodes, {"x": (3, 4)}, {"y": (12,)},
                           {"shape": np.array([12], np.int64)}), {"x": (3, 4)})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    nodes = [helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=axis)]
    shapes = {0: ((2, 3, 4), (1, 3, 4), (3, 3, 4)), 1: ((2, 3, 4), (2, 1, 4), (2, 2, 4)),
              -1: ((2, 3, 4), (2, 3, 1), (2, 3, 5))}[axis]
    inits = {"c": w(*shapes[2])}
    out = np.concatenate([np.zeros(s) for s in shapes], axis=axis).shape
    check_model(make_model(nodes, {"a": shapes[0], "b": shapes[1]}, {"y": out}, inits),
                {"a": shapes[0], "b": shapes[1]})


def test_slice_gather_split():
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
             helper.make_node("Gather", ["x", "idx"], ["g"], axis=1),
             helper.make_node("Split", ["x", "parts"], ["p0", "p1"], axis=2),
             helper.make_node("Add", ["p1", "p1"], ["q"])]
    inits = {"st": np.array([1, 0], np.int64), "en": np.array([4, 7], np.int64),
             "ax": np.array([1, 2], np.int64), "sp": np.array([2, 3], np.int64),
             "idx": np.array([-1], np.int64), "parts": np.array([3, 4], np.int64)}
    model = make_model(nodes, {"x": (2, 5, 7)}, {"s": None, "g": None, "p0": None, "q": None},
                       inits, opset=13)
    check_model(model, {"x": (2, 5, 7)})


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
def test_reduce(op):
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)
    check_model(make_model([node], {"x": (2, 6, 5)}, {"y": (2, 1, 5)},
                           {"axes": np.array([1], np.int64)}, opset=18), {"x": (2, 6, 5)})


# -- softmax ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis,shape", [(13, -1, (2, 10)), (13, 1, (2, 5, 3)),
                                              (11, 1, (2, 3, 4))])
def test_softmax(op, opset, axis, shape):
    node = helper.make_node(op, ["x"], ["y"], axis=axis)
    check_model(make_model([node], {"x": shape}, {"y": shape}, opset=opset), {"x": shape},
                tol="f32_transcendental", scale=3.0)


# -- recurrent ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("init_h", [False, True])
def test_gru(lbr, direction, init_h):
    T, I, H = 12, 3, 16
    ins = ["x", "W", "R", "B", "", "h0" if init_h else ""]
    while ins[-1] == "":
        ins.pop()
    inits = {"W": w(1, 3 * H, I), "R": w(1, 3 * H, H), "B": w(1, 6 * H)}
    feeds = {"x": (T, 1, I)}
    if init_h:
        feeds["h0"] = (1, 1, H)
    node = helper.make_node("GRU", ins, ["Y", "Yh"], hidden_size=H, linear_before_reset=lbr,
                            direction=direction)
    model = make_model([node], feeds, {"Y": (T, 1, 1, H), "Yh": (1, 1, H)}, inits)
    m = check_model(model, feeds, tol="f32_transcendental", edge_cases=RNN_CASES)
    _check_rnn_nan(m, feeds, direction)


@pytest.mark.parametrize("H", [5, 24, 33])  # scalar loop; one 16-vector + overlap; two + overlap
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_hidden_sizes(H, lbr):
    """The gate math over vectors of hidden units (ops._over_hidden): tails of the vector width."""
    T, I = 7, 3
    inits = {"W": w(1, 3 * H, I), "R": w(1, 3 * H, H), "B": w(1, 6 * H)}
    feeds = {"x": (T, 1, I)}
    node = helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "Yh"], hidden_size=H,
                            linear_before_reset=lbr)
    m = check_model(make_model([node], feeds, {"Y": (T, 1, 1, H), "Yh": (1, 1, H)}, inits),
                    feeds, tol="f32_transcendental", edge_cases=RNN_CASES)
    _check_rnn_nan(m, feeds, "forward")


# onnxruntime's recurrent kernels clamp their gate inputs, which turns a NaN input into arbitrary
# numbers (its GRU output holds 1.0 where the input was NaN): there is no ORT NaN behaviour to
# match, so the NaN case checks that NaN propagates from its time step on, in time order.
RNN_CASES = ("random", "zeros", "large")


def _check_rnn_nan(m, feeds, direction):
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(s).astype(np.float32) for s in feeds.values()]
    T = args[0].shape[0]
    t_nan = T // 2
    args[0][t_nan, 0, 0] = np.nan
    outs = m(*args)
    Y = outs[0]
    seen = range(t_nan, T) if direction == "forward" else range(0, t_nan + 1)
    clean = range(0, t_nan) if direction == "forward" else range(t_nan + 1, T)
    assert np.isnan(Y[list(seen)]).all()
    assert np.isfinite(Y[list(clean)]).all()
    assert all(np.isnan(o).all() for o in outs[1:])


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_lstm(peephole, direction, H=12):
    T, I = 10, 4
    inits = {"W": w(1, 4 * H, I), "R": w(1, 4 * H, H), "B": w(1, 8 * H)}
    ins = ["x", "W", "R", "B", "", "h0", "c0"]
    if peephole:
        inits["P"] = w(1, 3 * H)
        ins.append("P")
    feeds = {"x": (T, 1, I), "h0": (1, 1, H), "c0": (1, 1, H)}
    node = helper.make_node("LSTM", ins, ["Y", "Yh", "Yc"], hidden_size=H, direction=direction)
    m = check_model(make_model([node], feeds, {"Y": (T, 1, 1, H), "Yh": (1, 1, H),
                                               "Yc": (1, 1, H)}, inits), feeds,
                    tol="f32_transcendental", edge_cases=RNN_CASES)
    _check_rnn_nan(m, feeds, direction)


@pytest.mark.parametrize("H", [5, 24])
def test_lstm_hidden_sizes(H):
    """The LSTM cell over vectors of hidden units, updating c in place where vectors overlap."""
    test_lstm(True, "forward", H)


# -- fusion ------------------------------------------------------------------------------------------

def test_fused_chains_and_residual():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"]),          # per-channel scale
             helper.make_node("Add", ["m", "x"], ["r"]),          # residual (same shape)
             helper.make_node("Clip", ["r", "lo", "hi"], ["y0"]),  # ReLU6
             helper.make_node("Sigmoid", ["y0"], ["s1"]),
             helper.make_node("Mul", ["y0", "s1"], ["y"])]        # SiLU-like tail
    inits = {"w": w(4, 4, 3, 3), "b": w(4), "s": w(4, 1, 1) + 1,
             "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    m = check_model(make_model(nodes, {"x": (1, 4, 7, 18)}, {"y": (1, 4, 7, 18)}, inits),
                    {"x": (1, 4, 7, 18)}, tol="f32_transcendental")
    # Mul, Add and Clip join the Conv; Sigmoid and the last Mul read y0 twice, so they stay one
    # Elementwise node
    assert m.info.ops == {"Conv": 1, "Elementwise": 1}, m.info.ops


def test_unfused_matches_fused():
    from edgert import sensor
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"]),
             helper.make_node("Tanh", ["g"], ["t"]), helper.make_node("Add", ["t", "c"], ["y"])]
    model = make_model(nodes, {"x": (1, 20)}, {"y": (1, 24)},
                       {"w": w(20, 24), "b": w(24), "c": w(24)})
    x = RNG.standard_normal((1, 20)).astype(np.float32)
    a = sensor.compile(model)(x).copy()
    b = sensor.compile(model, fuse=False)(x).copy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert sensor.compile(model, fuse=False).info.ops == {"Gemm": 1, "Elementwise": 2}
    assert sensor.compile(model).info.ops == {"Gemm": 1}


@pytest.mark.parametrize("case", ["gemm", "gemm_wide", "gemm_head", "gemm_head_rows", "conv_p",
                                  "conv_c", "conv_relu6", "depthwise", "depthwise_wide", "gru"])
def test_tiled_kernels_equal_scalar_twins(case, monkeypatch):
    """The register-tiled kernels (microkernels.py) against the plain loops they replace: the
    convs' Relu / Clip tail applied in the GEMM's registers (conv_relu6 with NaN and values
    beyond both bounds), a 4-wide Gemm head as one vector (one row, and several)."""
    from edgert import sensor
    from sensor_reference import ort_run
    if case in ("gemm_head", "gemm_head_rows"):
        rows = 1 if case == "gemm_head" else 3
        model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], {"x": (rows, 37)},
                           {"y": (rows, 4)}, {"w": w(37, 4), "b": w(4)})
    elif case == "conv_relu6":
        model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3],
                                             pads=[1, 1]),
                            helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
                           {"x": (1, 6, 40)}, {"y": (1, 10, 40)},
                           {"w": w(10, 6, 3) * 4, "b": w(10), "lo": np.array(0, np.float32),
                            "hi": np.array(6, np.float32)})
    elif case == "gemm":
        model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], {"x": (6, 33)},
                           {"y": (6, 29)}, {"w": w(33, 29), "b": w(29)})
    elif case == "gemm_wide":  # 16-float vectors on AVX-512 hosts, with an overlapping tail
        model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], {"x": (5, 40)},
                           {"y": (5, 141)}, {"w": w(40, 141), "b": w(141)})
    elif case == "gru":
        model = make_model([helper.make_node("GRU", ["x", "W", "R", "B"], ["Y"], hidden_size=20)],
                           {"x": (9, 1, 5)}, {"Y": (9, 1, 1, 20)},
                           {"W": w(1, 60, 5), "R": w(1, 60, 20), "B": w(1, 120)})
    else:
        cin, cout, hw, g = {"conv_p": (5, 7, 13, 1), "conv_c": (9, 24, 3, 1),
                            "depthwise": (11, 11, 6, 11), "depthwise_wide": (70, 70, 5, 70)}[case]
        model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3],
                                             pads=[1, 1, 1, 1], group=g),
                            helper.make_node("Relu", ["c"], ["y"])],
                           {"x": (1, cin, hw, hw)}, {"y": (1, cout, hw, hw)},
                           {"w": w(cout, cin // g, 3, 3), "b": w(cout)})
    x = [RNG.standard_normal(s).astype(np.float32) for s in
         sensor.compile(model).input_shapes]
    if case == "conv_relu6":
        x[0][0, 0, 7] = np.nan  # NaN passes through the clip, as onnxruntime's does
    tiled = sensor.compile(model)(*x).copy()
    monkeypatch.setenv("EDGERT_SENSOR_KERNELS", "scalar")
    scalar = sensor.compile(model)(*x).copy()
    np.testing.assert_allclose(tiled, scalar, rtol=1e-5, atol=1e-6)
    if case == "conv_relu6":
        assert np.isnan(tiled).any() and (tiled == 0).any() and (tiled == 6).any()
        np.testing.assert_allclose(tiled, ort_run(model, {"x": x[0]})[0], rtol=1e-5, atol=1e-5)
