"""Quantized (int8) ops of the sensor path.

Kernels: QuantizeLinear, DequantizeLinear (per tensor or per axis; int8/uint8), QLinearConv,
QLinearMatMul, com.microsoft QGemm (int8/uint8, integer accumulation, requantized with a float
multiplier and round-half-to-even as onnxruntime's MLAS does), ConvInteger and MatMulInteger
(int32 out).

QLinearConv, QLinearMatMul (constant B) and QGemm run on the register-tiled kernels of
int8_microkernels.py (a VNNI or a portable integer GEMM over a uint8 im2col, a vectorised
channels-last depthwise kernel); the plain loops here (_conv_int, _matmul_int) are their scalar
twins, selected with EDGERT_SENSOR_KERNELS=scalar, and give the same bytes. Between QLinearConvs
int8 activations stay channels-last (choose_layouts).

`compile(dtype=...)` decides how a QDQ model (onnxruntime.quantization's default format: int8
weights behind DequantizeLinear, activations through QuantizeLinear -> DequantizeLinear pairs)
computes:
  f32   every DequantizeLinear of a constant is folded into float weights; Conv/MatMul run in
        float and the activation Q/DQ pairs stay as rounding steps (a float simulation).
  int8  DequantizeLinear(x_q) -> Conv|MatMul|Gemm (weights DequantizeLinear(w_q)) [-> Relu] ->
        QuantizeLinear becomes one QLinearConv / QLinearMatMul / QGemm: int8 x int8 -> int32
        sums, requantized once (what onnxruntime itself runs for this pattern).
Both agree with onnxruntime within the int8 tolerance (one output quantization step; the int8
path measures 0 on the benchmark models).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from .graph import Graph, Node

KERNELS: dict[tuple[str, str], Callable[[Any], None]] = {}
SCRATCH: dict[str, Callable[[Any, Any], int]] = {}


def _reg(op: str, domains: tuple[str, ...] = ("",)) -> Callable[[Callable], Callable]:
    def deco(f: Callable) -> Callable:
        for d in domains:
            KERNELS[(d, op)] = f
        return f
    return deco


# -- helpers -----------------------------------------------------------------------------------

def _const(ctx: Any, t: str, what: str) -> Optional[np.ndarray]:
    if not t:
        return None
    c = ctx.const(t)
    if c is None:
        raise UnsupportedModelError(f"{ctx.node.where()}: a run-time {what} is not supported "
                                    f"(fallback='onnxruntime' runs it)")
    return c


def _qrange(dt: np.dtype) -> tuple[int, int]:
    if dt == np.int8:
        return -128, 127
    if dt == np.uint8:
        return 0, 255
    raise UnsupportedModelError(f"quantized type {dt} is not supported (int8 and uint8 are)")


def _ld_int(ctx: Any, p: Any, idx: Any, dt: np.dtype) -> Any:
    """Element as i32: sign-extended int8, zero-extended uint8, int32 as is."""
    b = ctx.b
    if dt == np.int32:
        return ctx.load(p, idx, ctx.i32)
    v = ctx.load(p, idx, ctx.i8)
    return b.sext(v, ctx.i32) if dt == np.int8 else b.zext(v, ctx.i32)


def _roundeven(ctx: Any, v: Any) -> Any:
    return ctx.b.call(ctx.cg.module.declare_intrinsic("llvm.roundeven", [ctx.f32]), [v])


def _to_q(ctx: Any, f: Any, zp: Any, dt: np.dtype, lo_extra: Optional[Any] = None) -> Any:
    """saturate(roundeven(f) + zp) as an i8 value (f: f32, zp: f32)."""
    b = ctx.b
    qmin, qmax = _qrange(dt)
    r = b.fadd(_roundeven(ctx, f), zp)
    lo = ctx.cf(qmin)
    r = b.select(b.fcmp_unordered("<", r, lo), lo, r)  # NaN -> qmin (a defined value)
    r = b.select(b.fcmp_ordered(">", r, ctx.cf(qmax)), ctx.cf(qmax), r)
    if lo_extra is not None:
        r = b.select(b.fcmp_ordered("<", r, lo_extra), lo_extra, r)
    return b.trunc(b.fptosi(r, ctx.i32), ctx.i8)


def _axis_params(ctx: Any, n: Node, shape: tuple[int, ...], scale: np.ndarray,
                 zp: Optional[np.ndarray], zdt: np.dtype) -> tuple[int, Any, Any, bool]:
    """(axis, scale ptr, zero-point-as-f32 ptr, per_axis)."""
    per_axis = scale.size > 1
    axis = int(n.attrs.get("axis", 1)) % max(len(shape), 1) if per_axis else 0
    if per_axis and scale.size != shape[axis]:
        raise ModelFormatError(f"{n.where()}: {scale.size} scales for axis {axis} of {shape}")
    z = np.zeros(scale.size, np.float32) if zp is None else zp.astype(np.float32).reshape(-1)
    if z.size == 1 and scale.size > 1:
        z = np.full(scale.size, z[0], np.float32)
    sp = ctx.array_ptr(scale.astype(np.float32).reshape(-1), "q_scale")
    zpp = ctx.array_ptr(z, "q_zp")
    return axis, sp, zpp, per_axis


def _elementwise_nest(ctx: Any, shape: tuple[int, ...], axis: int,
                      body: Callable[[Any, Any], None]) -> None:
    """body(flat index, channel index along axis) over a contiguous tensor."""
    outer = int(np.prod(shape[:axis])) if shape else 1
    ch = shape[axis] if shape else 1
    inner = int(np.prod(shape[axis + 1:])) if shape else 1
    with ctx.loop(outer, name="o") as o, ctx.loop(ch, name="c") as c, \
            ctx.loop(inner, name="i") as i:
        body(ctx.add(ctx.mul(o, ch * inner), ctx.mul(c, inner), i), c)


# -- QuantizeLinear / DequantizeLinear -------------------------------------------------------------

@_reg("QuantizeLinear")
def k_quantize(ctx: Any) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    scale = _const(ctx, n.inputs[1], "scale")
    zp = _const(ctx, n.inputs[2], "zero point") if len(n.inputs) > 2 else None
    odt = ctx.dtype(y)
    _qrange(odt)
    if n.attrs.get("block_size", 0):
        raise UnsupportedModelError(f"{n.where()}: blocked quantization is not supported")
    shape = ctx.shape(x)
    axis, sp, zpp, per_axis = _axis_params(ctx, n, shape, scale, zp, odt)
    b = ctx.b
    xp, yp = ctx.ptr(x), ctx.ptr(y)

    def body(i: Any, c: Any) -> None:
        k = c if per_axis else ctx.ci(0)
        f = b.fdiv(ctx.load(xp, i), ctx.load(sp, k))
        ctx.store(_to_q(ctx, f, ctx.load(zpp, k), odt), yp, i)
    _elementwise_nest(ctx, shape, axis, body)


@_reg("DequantizeLinear")
def k_dequantize(ctx: Any) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    scale = _const(ctx, n.inputs[1], "scale")
    idt = ctx.dtype(x)
    zp = _const(ctx, n.inputs[2], "zero point") if len(n.inputs) > 2 else None
    shape = ctx.shape(x)
    axis, sp, zpp, per_axis = _axis_params(ctx, n, shape, scale, zp, idt)
    b = ctx.b
    xp, yp = ctx.ptr(x), ctx.ptr(y)

    def body(i: Any, c: Any) -> None:
        k = c if per_axis else ctx.ci(0)
        q = b.sitofp(_ld_int(ctx, xp, i, idt), ctx.f32)
        ctx.store(b.fmul(b.fsub(q, ctx.load(zpp, k)), ctx.load(sp, k)), yp, i)
    _elementwise_nest(ctx, shape, axis, body)


# -- integer matmul / conv -----------------------------------------------------------------------

def _zp_scalar(ctx: Any, t: str, what: str) -> int:
    c = _const(ctx, t, what) if t else None
    if c is None:
        return 0
    if c.size != 1:
        raise UnsupportedModelError(f"{ctx.node.where()}: a per-channel {what} is not supported")
    return int(c.reshape(-1)[0])


def _matmul_int(ctx: Any, a: str, b_: str, azp: int, bzp: np.ndarray, y: str,
                finish: Callable[[Any, Any, Any], Any], bconst: Optional[np.ndarray] = None
                ) -> None:
    """y[.., m, n] = finish(sum_k (a - azp)(b - bzp[n]), n, offset) for 2-D B (bconst: B's
    values [K, N] where the tensor b_ is stored otherwise, e.g. transposed)."""
    n = ctx.node
    ashp = ctx.shape(a)
    bshp = ctx.shape(b_) if bconst is None else bconst.shape
    if len(bshp) != 2:
        raise UnsupportedModelError(f"{n.where()}: a batched right operand is not supported")
    K, N = bshp
    if ashp[-1] != K:
        raise ModelFormatError(f"{n.where()}: {ashp} x {bshp}")
    M = int(np.prod(ashp[:-1]))
    adt, bdt = ctx.dtype(a), ctx.dtype(b_)
    bb = ctx.b
    ap, yp = ctx.ptr(a), ctx.ptr(y)
    bc = ctx.const(b_) if bconst is None else bconst
    bzv = np.broadcast_to(bzp.reshape(-1), (N,)).astype(np.int32)
    if bc is not None:  # constant B: (b - bzp) as int32, laid out [N, K] for the k loop
        wq = (bc.astype(np.int32) - bzv[None, :]).T.copy()
        wp = ctx.array_ptr(wq, "qmm_w")
    acc_ptr = None
    with ctx.loop(M, name="m") as m, ctx.loop(N, name="n") as nn:
        with ctx.b.goto_entry_block():
            acc_ptr = ctx.b.alloca(ctx.i32)
        bb.store(ctx.ir.Constant(ctx.i32, 0), acc_ptr)
        with ctx.loop(K, name="k") as k:
            av = bb.sub(_ld_int(ctx, ap, ctx.add(ctx.mul(m, K), k), adt),
                        ctx.ir.Constant(ctx.i32, azp))
            if bc is not None:
                bv = ctx.load(wp, ctx.add(ctx.mul(nn, K), k), ctx.i32)
            else:
                bv = bb.sub(_ld_int(ctx, ctx.ptr(b_), ctx.add(ctx.mul(k, N), nn), bdt),
                            ctx.ir.Constant(ctx.i32, int(bzv[0])))
            bb.store(bb.add(bb.load(acc_ptr, typ=ctx.i32), bb.mul(av, bv)), acc_ptr)
        off = ctx.add(ctx.mul(m, N), nn)
        finish(bb.load(acc_ptr, typ=ctx.i32), nn, off)


@_reg("MatMulInteger")
def k_matmul_integer(ctx: Any) -> None:
    n = ctx.node
    a, b_, y = n.inputs[0], n.inputs[1], n.outputs[0]
    azp = _zp_scalar(ctx, n.inputs[2] if len(n.inputs) > 2 else "", "a zero point")
    bz = _const(ctx, n.inputs[3], "b zero point") if len(n.inputs) > 3 and n.inputs[3] else None
    bzp = np.zeros(1, np.int32) if bz is None else bz.astype(np.int32)
    yp = ctx.ptr(y)
    _matmul_int(ctx, a, b_, azp, bzp, y, lambda acc, nn, off: ctx.store(acc, yp, off))


@_reg("QLinearMatMul")
def k_qlinear_matmul(ctx: Any) -> None:
    n = ctx.node
    a, a_s, a_zp, b_, b_s, b_zp, y_s, y_zp = n.inputs[:8]
    y = n.outputs[0]
    sa, sb, sy = (_const(ctx, t, "scale").astype(np.float64).reshape(-1) for t in (a_s, b_s, y_s))
    azp = _zp_scalar(ctx, a_zp, "a zero point")
    bzp = _const(ctx, b_zp, "b zero point").astype(np.int32)
    yzp = _zp_scalar(ctx, y_zp, "y zero point")
    N = ctx.shape(b_)[-1]
    mult = np.broadcast_to(sa * sb / sy, (N,)).astype(np.float32)
    odt = ctx.dtype(y)
    bc = ctx.const(b_)
    ashp = ctx.shape(a)
    if bc is not None and bc.ndim == 2 and ashp and ashp[-1] == bc.shape[0]:
        K = bc.shape[0]
        bzv = np.broadcast_to(bzp.reshape(-1), (N,)).astype(np.int64)
        wk = (bc.astype(np.int64) - bzv[None, :]).T[None]  # [1, N, K]
        if _qgemm_tiled(ctx, a, int(np.prod(ashp[:-1])), K, N, azp, wk, np.zeros(N, np.int64),
                        mult, yzp, odt, False):
            return
    mp = ctx.array_ptr(np.ascontiguousarray(mult), "qmm_mult")
    yp = ctx.ptr(y)
    bb = ctx.b

    def finish(acc: Any, nn: Any, off: Any) -> None:
        f = bb.fmul(bb.sitofp(acc, ctx.f32), ctx.load(mp, nn))
        ctx.store(_to_q(ctx, f, ctx.cf(yzp), odt), yp, off)
    _matmul_int(ctx, a, b_, azp, bzp, y, finish)


@_reg("QGemm", ("com.microsoft",))
def k_qgemm(ctx: Any) -> None:
    """onnxruntime's QGemm (com.microsoft) with a quantized output: y = requant(alpha-free
    A[M, K] B (+ C, int32 at scale a_scale * b_scale)); transA = 0, alpha = 1, B constant (per
    tensor or per output column zero points and scales). dtype="int8" also makes it from
    DequantizeLinear -> Gemm [-> Relu] -> QuantizeLinear (`_relu` then clamps at the zero
    point). The tiled path runs int8_microkernels.qgemm; the scalar twin _matmul_int."""
    from .int8_microkernels import wrap_i32
    n = ctx.node
    if len(n.inputs) < 9 or not n.inputs[7]:
        raise UnsupportedModelError(f"{n.where()}: a QGemm with a float output is not supported "
                                    f"(fallback='onnxruntime' runs it)")
    a, a_s, a_zp, b_, b_s, b_zp, c_t, y_s, y_zp = n.inputs[:9]
    y = n.outputs[0]
    if n.attrs.get("transA", 0) or float(n.attrs.get("alpha", 1.0)) != 1.0:
        raise UnsupportedModelError(f"{n.where()}: QGemm with transA or alpha != 1 is not "
                                    f"supported")
    bq = _const(ctx, b_, "B")
    if bq.ndim != 2:
        raise ModelFormatError(f"{n.where()}: B of shape {bq.shape}")
    bkn = (bq.T if n.attrs.get("transB", 0) else bq).astype(np.int64)  # [K, N]
    K, N = bkn.shape
    ashp = ctx.shape(a)
    if len(ashp) != 2 or ashp[1] != K:
        raise ModelFormatError(f"{n.where()}: A {ashp} x B [{K}, {N}]")
    M = ashp[0]
    sa, sb, sy = (_const(ctx, t, "scale").astype(np.float64).reshape(-1) for t in (a_s, b_s, y_s))
    azp = _zp_scalar(ctx, a_zp, "a zero point")
    bz = _const(ctx, b_zp, "b zero point") if b_zp else None
    bzp = np.zeros(N, np.int64) if bz is None else \
        np.broadcast_to(bz.astype(np.int64).reshape(-1), (N,))
    yzp = _zp_scalar(ctx, y_zp, "y zero point")
    cb = _const(ctx, c_t, "bias") if c_t else None
    bias_i = np.zeros(N, np.int64) if cb is None else \
        np.broadcast_to(cb.astype(np.int64).reshape(-1), (N,))
    mult = np.broadcast_to(sa * sb / sy, (N,)).astype(np.float32)
    odt = ctx.dtype(y)
    relu = bool(n.attrs.get("_relu"))
    yp = ctx.ptr(y)
    wk = (bkn - bzp[None, :]).T[None]  # [1, N, K]
    if _qgemm_tiled(ctx, a, M, K, N, azp, wk, bias_i, mult, yzp, odt, relu):
        return
    mp = ctx.array_ptr(np.ascontiguousarray(mult), "qgemm_mult")
    bp = ctx.array_ptr(wrap_i32(bias_i), "qgemm_bias")
    bb = ctx.b
    relu_floor = ctx.cf(yzp) if relu else None

    def finish(acc: Any, nn: Any, off: Any) -> None:
        acc = bb.add(acc, ctx.load(bp, nn, ctx.i32))
        f = bb.fmul(bb.sitofp(acc, ctx.f32), ctx.load(mp, nn))
        ctx.store(_to_q(ctx, f, ctx.cf(yzp), odt, relu_floor), yp, off)
    _matmul_int(ctx, a, b_, azp, bzp, y, finish, bconst=np.ascontiguousarray(bkn))


def _qgemm_tiled(ctx: Any, a: str, M: int, K: int, N: int, azp: int, wk: np.ndarray,
                 bias_i: np.ndarray, mult: np.ndarray, yzp: int, odt: np.dtype,
                 relu: bool) -> bool:
    """y[M, N] = requant(bias + sum_k (a - a_zp) wk[0, n, k]) on int8_microkernels.qgemm, A
    moved to uint8 [M, Kp] in scratch; False where the tiled kernels do not apply."""
    from . import int8_microkernels as qk
    from .ops import tiled_kernels
    adt = ctx.dtype(a)
    if not tiled_kernels() or adt not in (np.int8, np.uint8) or odt not in (np.int8, np.uint8):
        return False
    qmin, qmax = _qrange(odt)
    mode = qk.int8_dot(ctx)
    if mode in ("vnni512", "sdot") and not qk.vnni_ok(wk):
        mode = "generic"
    packed, Kp, Npad = qk.pack_weights(wk, mode)
    signed = adt == np.int8
    flip = qk.a_flip(mode, signed)
    offset = qk.a_offset(mode, azp, signed)  # the A value that stands for a = a_zp
    bpad = np.zeros(Npad, np.int32)
    bpad[:N] = qk.wrap_i32(bias_i - offset * wk[0].sum(1))
    mpad = np.zeros(Npad, np.float32)
    mpad[:N] = mult
    sp, ap, b = ctx.scratch_ptr, ctx.ptr(a), ctx.b
    x80 = ctx.ir.Constant(ctx.i8, 0x80)
    with ctx.loop(M, name="m") as m:
        for k in range(K, Kp):
            ctx.store(ctx.ir.Constant(ctx.i8, 0), sp, ctx.add(ctx.mul(m, Kp), k))
        with ctx.loop(K, name="k") as k:
            v = ctx.load(ap, ctx.add(ctx.mul(m, K), k), ctx.i8)
            ctx.store(b.xor(v, x80) if flip else v, sp, ctx.add(ctx.mul(m, Kp), k))
    qk.qgemm(ctx, mode, M, N, Kp, Npad, sp, ctx.ci(0), ctx.array_ptr(packed, "qgemm_wpack"),
             ctx.ci(0), ctx.array_ptr(bpad, "qgemm_b"), ctx.array_ptr(mpad, "qgemm_mult"),
             ctx.ci(0), ctx.ptr(ctx.node.outputs[0]), ctx.ci(0), N, 1, float(yzp),
             float(max(qmin, yzp) if relu else qmin), float(qmax),
             mult_max=float(np.abs(mult).max(initial=0.0)))
    return True


def _qgemm_scratch(n: Node, gr: Graph) -> int:
    """A as uint8 [M, Kp] (QGemm, QLinearMatMul: M = the product of A's leading dims)."""
    shp = gr.shapes.get(n.inputs[0], ())
    if not shp:
        return 0
    M = int(np.prod(shp[:-1])) if len(shp) > 1 else 1
    return M * ((shp[-1] + 3) // 4 * 4) + 128


SCRATCH["QGemm"] = _qgemm_scratch
SCRATCH["QLinearMatMul"] = _qgemm_scratch


def _conv_int(ctx: Any, x: str, w: str, xzp: int, wzp: np.ndarray, bias: Optional[np.ndarray],
              y: str, finish: Callable[[Any, Any, Any], Any]) -> None:
    """Integer convolution: acc = bias + sum (x - xzp)(w - wzp[co]); padding reads xzp (0)."""
    from .ops import _conv_geometry
    n = ctx.node
    ctx.node = Node("Conv", n.name, [x, w], [y], n.attrs)  # geometry reads Conv's input order
    try:
        g = _conv_geometry(ctx, ctx.node)
    finally:
        ctx.node = n
    wq = _const(ctx, w, "weight")
    CO, Cg, KH, KW = g["CO"], g["Cg"], g["KH"], g["KW"]
    wz = np.broadcast_to(wzp.reshape(-1), (CO,)).astype(np.int32)
    wi = wq.astype(np.int32).reshape(CO, Cg * KH * KW) - wz[:, None]
    wp = ctx.array_ptr(np.ascontiguousarray(wi), "qconv_w")
    bias_i = np.zeros(CO, np.int32) if bias is None else bias.astype(np.int32).reshape(CO)
    bp = ctx.array_ptr(bias_i, "qconv_b")
    xdt = ctx.dtype(x)
    xp = ctx.ptr(x)
    bb = ctx.b
    N, C, H, W, OH, OW = g["N"], g["C"], g["H"], g["W"], g["OH"], g["OW"]
    COg = CO // g["group"]
    with ctx.b.goto_entry_block():
        acc_ptr = ctx.b.alloca(ctx.i32)
    with ctx.loop(N, name="b") as bn, ctx.loop(CO, name="co") as co, \
            ctx.loop(OH, name="oy") as oy, ctx.loop(OW, name="ox") as ox:
        bb.store(ctx.load(bp, co, ctx.i32), acc_ptr)
        grp = bb.udiv(co, ctx.ci(COg))
        with ctx.loop(Cg, name="ci") as ci, ctx.loop(KH, name="ky") as ky:
            iy = bb.sub(ctx.add(ctx.mul(oy, g["sy"]), ctx.mul(ky, g["dy"])), ctx.ci(g["pt"]))
            y_ok = bb.and_(bb.icmp_signed(">=", iy, ctx.ci(0)), bb.icmp_signed("<", iy, ctx.ci(H)))
            c = ctx.add(ctx.mul(grp, Cg), ci)
            with ctx.loop(KW, name="kx") as kx:
                ix = bb.sub(ctx.add(ctx.mul(ox, g["sx"]), ctx.mul(kx, g["dx"])), ctx.ci(g["pl"]))
                ok = bb.and_(y_ok, bb.and_(bb.icmp_signed(">=", ix, ctx.ci(0)),
                                           bb.icmp_signed("<", ix, ctx.ci(W))))
                src = ctx.add(ctx.mul(bn, C * H * W), ctx.mul(c, H * W), ctx.mul(iy, W), ix)
                xv = _ld_int(ctx, xp, bb.select(ok, src, ctx.ci(0)), xdt)
                xv = bb.select(ok, bb.sub(xv, ctx.ir.Constant(ctx.i32, xzp)),
                               ctx.ir.Constant(ctx.i32, 0))
                wv = ctx.load(wp, ctx.add(ctx.mul(co, Cg * KH * KW), ctx.mul(ci, KH * KW),
                                          ctx.mul(ky, KW), kx), ctx.i32)
                bb.store(bb.add(bb.load(acc_ptr, typ=ctx.i32), bb.mul(xv, wv)), acc_ptr)
        off = ctx.add(ctx.mul(bn, CO * OH * OW), ctx.mul(co, OH * OW), ctx.mul(oy, OW), ox)
        finish(bb.load(acc_ptr, typ=ctx.i32), co, off)


@_reg("ConvInteger")
def k_conv_integer(ctx: Any) -> None:
    n = ctx.node
    x, w, y = n.inputs[0], n.inputs[1], n.outputs[0]
    xzp = _zp_scalar(ctx, n.inputs[2] if len(n.inputs) > 2 else "", "x zero point")
    wz = _const(ctx, n.inputs[3], "w zero point") if len(n.inputs) > 3 and n.inputs[3] else None
    yp = ctx.ptr(y)
    _conv_int(ctx, x, w, xzp, np.zeros(1) if wz is None else wz, None, y,
              lambda acc, co, off: ctx.store(acc, yp, off))


@_reg("QLinearConv")
def k_qlinear_conv(ctx: Any) -> None:
    n = ctx.node
    x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp = n.inputs[:8]
    bias_t = n.inputs[8] if len(n.inputs) > 8 and n.inputs[8] else ""
    y = n.outputs[0]
    sx, sw, sy = (_const(ctx, t, "scale").astype(np.float64).reshape(-1) for t in (x_s, w_s, y_s))
    CO = ctx.shape(y)[1]
    mult = np.broadcast_to(sx * sw / sy, (CO,)).astype(np.float32)
    mp = ctx.array_ptr(np.ascontiguousarray(mult), "qconv_mult")
    yzp = _zp_scalar(ctx, y_zp, "y zero point")
    odt = ctx.dtype(y)
    yp = ctx.ptr(y)
    bb = ctx.b
    relu_floor = ctx.cf(yzp) if n.attrs.get("_relu") else None
    xzp = _zp_scalar(ctx, x_zp, "x zero point")
    if _qconv_tiled(ctx, x, w, xzp, _const(ctx, w_zp, "w zero point"),
                    _const(ctx, bias_t, "bias"), mult, yzp, odt, bool(n.attrs.get("_relu"))):
        return

    def finish(acc: Any, co: Any, off: Any) -> None:
        f = bb.fmul(bb.sitofp(acc, ctx.f32), ctx.load(mp, co))
        ctx.store(_to_q(ctx, f, ctx.cf(yzp), odt, relu_floor), yp, off)
    _conv_int(ctx, x, w, _zp_scalar(ctx, x_zp, "x zero point"),
              _const(ctx, w_zp, "w zero point"), _const(ctx, bias_t, "bias"), y, finish)


# -- QLinearConv on the tiled int8 kernels (int8_microkernels.py) ---------------------------------

def _qconv_geometry(ctx: Any, x: str, w: str, y: str) -> dict[str, Any]:
    from .ops import _conv_geometry
    n = ctx.node
    ctx.node = Node("Conv", n.name, [x, w], [y], n.attrs)  # geometry reads Conv's input order
    try:
        return _conv_geometry(ctx, ctx.node)
    finally:
        ctx.node = n


def _is_depthwise(g: dict[str, Any]) -> bool:
    return g["group"] == g["C"] and g["Cg"] == 1 and g["CO"] == g["C"]


def _qpointwise(g: dict[str, Any]) -> bool:
    return (g["KH"], g["KW"], g["sy"], g["sx"]) == (1, 1, 1, 1) and not g["padded"]


def _qconv_scratch(n: Node, gr: Graph) -> int:
    from .ops import _ShapeOnly, tiled_kernels
    if not tiled_kernels():
        return 0
    ctx = _ShapeOnly(gr, n)
    g = _qconv_geometry(ctx, n.inputs[0], n.inputs[3], n.outputs[0])
    xpad = g["Hp"] * g["Wp"] * g["C"] + 64
    if _is_depthwise(g):
        return xpad + 64
    kp = (g["Cg"] * g["KH"] * g["KW"] + 3) // 4 * 4
    a = g["OH"] * g["OW"] * kp + 64
    return (0 if _qpointwise(g) else xpad) + a + 64


def _fill_padded_nhwc(ctx: Any, g: dict[str, Any], xp: Any, x_base: Any, dst: Any,
                      fill: int, flip: bool) -> None:
    """dst[Hp, Wp, C] (bytes) = x placed at (pt, pl), `fill` around it; x is channels-last when
    g["nhwc_in"], else NCHW; flip: x ^ 0x80 (int8 <-> uint8, moved by 128). Only the border is
    filled: the interior is overwritten every call."""
    b = ctx.b
    C, H, W, Hp, Wp, pt, pl = (g[k] for k in ("C", "H", "W", "Hp", "Wp", "pt", "pl"))
    ir = ctx.ir
    memset = ctx.cg.module.declare_intrinsic("llvm.memset", [ctx.cg.ptr, ctx.i64])

    def border(at: Any, nbytes: int) -> None:
        if nbytes > 0:
            b.call(memset, [ctx.gep(dst, at, ctx.i8), ir.Constant(ctx.i8, fill & 0xFF),
                            ctx.ci(nbytes), ir.Constant(ir.IntType(1), 0)])
    border(ctx.ci(0), pt * Wp * C)
    border(ctx.ci((pt + H) * Wp * C), (Hp - pt - H) * Wp * C)
    x80 = ir.Constant(ctx.i8, 0x80)

    def put(v: Any, at: Any) -> None:
        ctx.store(b.xor(v, x80) if flip else v, dst, at)
    with ctx.loop(H, name="h") as h:
        r = ctx.mul(ctx.add(h, pt), Wp * C)
        border(r, pl * C)
        border(ctx.add(r, (pl + W) * C), (Wp - pl - W) * C)
        if g["nhwc_in"]:
            src = ctx.add(x_base, ctx.mul(h, W * C))
            with ctx.loop(W * C, name="wc") as i:
                put(ctx.load(xp, ctx.add(src, i), ctx.i8), ctx.add(r, pl * C, i))
        else:
            with ctx.loop(C, name="c") as c, ctx.loop(W, name="w") as ww:
                v = ctx.load(xp, ctx.add(x_base, ctx.mul(c, H * W), ctx.mul(h, W), ww), ctx.i8)
                put(v, ctx.add(r, ctx.mul(ctx.add(ww, pl), C), c))


def _fill_padded_nchw(ctx: Any, g: dict[str, Any], xp: Any, x_base: Any, dst: Any,
                      fill: int, flip: bool) -> None:
    """dst[C, Hp, Wp] (bytes) = the NCHW x placed at (pt, pl), `fill` around it; flip as
    _fill_padded_nhwc."""
    b = ctx.b
    C, H, W, Hp, Wp, pt, pl = (g[k] for k in ("C", "H", "W", "Hp", "Wp", "pt", "pl"))
    ir = ctx.ir
    if g["padded"]:
        fn = ctx.cg.module.declare_intrinsic("llvm.memset", [ctx.cg.ptr, ctx.i64])
        b.call(fn, [dst, ir.Constant(ctx.i8, fill & 0xFF), ctx.ci(Hp * Wp * C),
                    ir.Constant(ir.IntType(1), 0)])
    x80 = ir.Constant(ctx.i8, 0x80)
    with ctx.loop(C * H, name="ch") as ch:
        c = b.udiv(ch, ctx.ci(H)) if H > 1 else ch
        h = b.urem(ch, ctx.ci(H)) if H > 1 else ctx.ci(0)
        r = ctx.add(ctx.mul(c, Hp * Wp), ctx.mul(h, Wp), pt * Wp + pl)
        src = ctx.add(x_base, ctx.mul(ch, W))
        with ctx.loop(W, name="w") as ww:
            v = ctx.load(xp, ctx.add(src, ww), ctx.i8)
            ctx.store(b.xor(v, x80) if flip else v, dst, ctx.add(r, ww))


def _qconv_tiled(ctx: Any, x: str, w: str, xzp: int, wzp: np.ndarray,
                 bias: Optional[np.ndarray], mult: np.ndarray, yzp: int, odt: np.dtype,
                 relu: bool) -> bool:
    """QLinearConv on int8_microkernels (see there); False where it does not apply (the caller
    runs the scalar loops)."""
    from . import int8_microkernels as qk
    from .ops import tiled_kernels
    n = ctx.node
    xdt = ctx.dtype(x)
    if not tiled_kernels() or xdt not in (np.int8, np.uint8) or odt not in (np.int8, np.uint8):
        return False
    y = n.outputs[0]
    g = _qconv_geometry(ctx, x, w, y)
    CO, Cg, KH, KW, G = g["CO"], g["Cg"], g["KH"], g["KW"], g["group"]
    N, C, H, W, OH, OW = g["N"], g["C"], g["H"], g["W"], g["OH"], g["OW"]
    P, T = OH * OW, KH * KW
    wq = _const(ctx, w, "weight")
    wz = np.broadcast_to(wzp.reshape(-1), (CO,)).astype(np.int64)
    wk = wq.astype(np.int64).reshape(CO, Cg, KH, KW) - wz[:, None, None, None]
    bias_i = np.zeros(CO, np.int64) if bias is None else bias.astype(np.int64).reshape(CO)
    qmin, qmax = _qrange(odt)
    lo, hi = float(max(qmin, yzp) if relu else qmin), float(qmax)
    signed = xdt == np.int8
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    sp = ctx.scratch_ptr
    b = ctx.b
    nhwc_out = bool(g["nhwc_out"])
    if _is_depthwise(g):
        lanes = 16 if int(getattr(ctx.cg, "vector_width", 8)) >= 16 else 8
        Cpad = (C + lanes - 1) // lanes * lanes
        taps = wk.reshape(C, T)
        wv = np.zeros((T, Cpad), np.int32)
        wv[:, :C] = taps.T
        # "quads" (AVX-512 VNNI or aarch64 dotprod, w - w_zp within int8): 4 taps per vpdpbusd
        # over the input moved to uint8 (x + 128 for int8), per sdot over it as int8 (x - 128
        # for uint8); padding holds the zero point's value, as in the GEMM
        mode = qk.dw_mode(ctx, taps)
        dot = qk.int8_dot(ctx)
        flip = mode == "quads" and qk.a_flip(dot, signed)
        # the value x (as read) that stands for x = x_zp
        offset = qk.a_offset(dot, xzp, signed) if mode == "quads" else xzp
        bpad = np.zeros(Cpad, np.int32)
        bpad[:C] = qk.wrap_i32(bias_i - offset * taps.sum(1))
        mpad = np.zeros(Cpad, np.float32)
        mpad[:C] = mult
        with ctx.loop(N, name="b") as bn:
            _fill_padded_nhwc(ctx, g, xp, ctx.mul(bn, C * H * W), sp, offset, flip)
            qk.depthwise(ctx, g, sp, signed and not flip, wv, bpad, mpad, yp, ctx.mul(bn, C * P),
                         nhwc_out, float(yzp), lo, hi, mode,
                         mult_max=float(np.abs(mult).max(initial=0.0)))
        return True
    COg = CO // G
    K = T * Cg
    pointwise = _qpointwise(g)
    # the im2col's k order: (ky, kx, ci) over a channels-last source (a tap's channels are
    # contiguous), (ci, ky, kx) over a channels-first one (a kernel row's taps are contiguous
    # at dilation 1: one small copy per (ci, ky))
    nchw_src = not g["nhwc_in"] and not pointwise
    if nchw_src:
        wkg = wk.reshape(G, COg, K)
    else:
        wkg = wk.reshape(G, COg, Cg, KH, KW).transpose(0, 1, 3, 4, 2).reshape(G, COg, K)
    mode = qk.int8_dot(ctx)
    if mode in ("vnni512", "sdot") and not qk.vnni_ok(wkg):
        mode = "generic"
    packed, Kp, Npad = qk.pack_weights(wkg, mode)
    flip = qk.a_flip(mode, signed)  # A: uint8 (x + 128 for int8 x), int8 for sdot
    offset = qk.a_offset(mode, xzp, signed)  # the A value that stands for x = x_zp
    bpad = np.zeros((G, Npad), np.int32)
    bpad[:, :COg] = qk.wrap_i32(bias_i.reshape(G, COg) - offset * wkg.sum(2))
    mpad = np.zeros((G, Npad), np.float32)
    mpad[:, :COg] = mult.reshape(G, COg)
    pb = ctx.array_ptr(packed, "qconv_wpack")
    b_p, m_p = ctx.array_ptr(bpad, "qconv_b"), ctx.array_ptr(mpad, "qconv_mult")
    ir = ctx.ir
    x80 = ir.Constant(ctx.i8, 0x80)
    Hp, Wp = g["Hp"], g["Wp"]
    xpad = sp
    a_buf = sp if pointwise else ctx.gep(sp, (Hp * Wp * C + 64) // 64 * 64, ctx.i8)

    def copy(dst: Any, src: Any, nbytes: int) -> None:
        """A[dst:] = xpad[src:], nbytes rounded up to a whole 4- or 8-byte move: the extra bytes
        land where the next copy of the row (made after this one) writes, or in the columns
        K..Kp-1 whose weights are zero, or in the buffers' 64-byte slack."""
        n = 4 if nbytes <= 4 else (nbytes + 7) // 8 * 8
        ctx.memcpy(ctx.gep(a_buf, dst, ctx.i8), ctx.gep(xpad, src, ctx.i8), n)
    with ctx.loop(N, name="b") as bn:
        x_base = ctx.mul(bn, C * H * W)
        if nchw_src:
            _fill_padded_nchw(ctx, g, xp, x_base, xpad, offset, flip)
        elif not pointwise:
            _fill_padded_nhwc(ctx, g, xp, x_base, xpad, offset, flip)
        with ctx.loop(G, name="grp") as gi:
            c0 = ctx.mul(gi, Cg)
            # A[p, k] (uint8) of this group; columns K..Kp-1 zero
            with ctx.loop(OH, name="oy") as oy, ctx.loop(OW, name="ox") as ox:
                p = ctx.add(ctx.mul(oy, OW), ox)
                arow = ctx.mul(p, Kp)
                for k in range(K, Kp):
                    ctx.store(ir.Constant(ctx.i8, 0), a_buf, ctx.add(arow, k))
                if pointwise:
                    with ctx.loop(Cg, name="ci") as ci:
                        if g["nhwc_in"]:
                            src = ctx.add(x_base, ctx.mul(p, C), c0, ci)
                        else:
                            src = ctx.add(x_base, ctx.mul(ctx.add(c0, ci), P), p)
                        v = ctx.load(xp, src, ctx.i8)
                        ctx.store(b.xor(v, x80) if flip else v, a_buf, ctx.add(arow, ci))
                elif nchw_src:
                    corner = ctx.add(ctx.mul(oy, g["sy"] * Wp), ctx.mul(ox, g["sx"]),
                                     ctx.mul(c0, Hp * Wp))
                    for ci in range(Cg):
                        for ky in range(KH):
                            src = ctx.add(corner, ci * Hp * Wp + ky * g["dy"] * Wp)
                            dst = ctx.add(arow, (ci * KH + ky) * KW)
                            if g["dx"] == 1:
                                copy(dst, src, KW)
                            else:
                                for kx in range(KW):
                                    copy(ctx.add(dst, kx), ctx.add(src, kx * g["dx"]), 1)
                else:
                    for ky in range(KH):
                        for kx in range(KW):
                            pix = ctx.add(ctx.mul(oy, g["sy"] * Wp), ctx.mul(ox, g["sx"]),
                                          ky * g["dy"] * Wp + kx * g["dx"])
                            copy(ctx.add(arow, (ky * KW + kx) * Cg),
                                 ctx.add(ctx.mul(pix, C), c0), Cg)
            if nhwc_out:
                y_off, m_stride, n_stride = ctx.add(ctx.mul(bn, P * CO), ctx.mul(gi, COg)), CO, 1
            else:
                y_off, m_stride, n_stride = ctx.add(ctx.mul(bn, CO * P), ctx.mul(gi, COg * P)), 1, P
            qk.qgemm(ctx, mode, P, COg, Kp, Npad, a_buf, ctx.ci(0), pb,
                     ctx.mul(gi, Kp * Npad), b_p, m_p, ctx.mul(gi, Npad), yp, y_off, m_stride,
                     n_stride, float(yzp), lo, hi, mult_max=float(np.abs(mult).max(initial=0.0)))
    return True


SCRATCH["QLinearConv"] = _qconv_scratch


def choose_layouts(g: Graph) -> None:
    """Keep int8 activations between QLinearConvs channels-last: a QLinearConv output whose every
    reader is a QLinearConv (as its input x) and that is no graph output is written [N, H, W, C]
    (`_nhwc_out`) and read so (`_nhwc_in`); the tiled int8 kernels take either layout, so only
    the chain's ends see NCHW. Nothing changes with EDGERT_SENSOR_KERNELS=scalar."""
    from .ops import tiled_kernels
    if not tiled_kernels():
        return
    readers = g.consumers()
    q8 = (np.dtype(np.int8), np.dtype(np.uint8))

    def tiled_qconv(n: Node) -> bool:
        return n.op == "QLinearConv" and n.domain in ("", "ai.onnx") and \
            np.dtype(g.dtypes.get(n.inputs[0], np.float32)) in q8 and \
            np.dtype(g.dtypes.get(n.outputs[0], np.float32)) in q8
    for n in g.nodes:
        if not tiled_qconv(n):
            continue
        t = n.outputs[0]
        rs = readers.get(t, [])
        if t in g.outputs or not rs:
            continue
        if all(tiled_qconv(r) and r.inputs[0] == t and t not in r.inputs[1:] for r in rs):
            n.attrs["_nhwc_out"] = 1
            for r in rs:
                r.attrs["_nhwc_in"] = 1
        elif len(g.shapes[t]) >= 3 and all(_pooled_dq(g, readers, r) for r in rs):
            # -> per-tensor DequantizeLinear -> GlobalAveragePool (a classifier head): the
            # dequantization does not care about the layout and the pool reads channels-last
            n.attrs["_nhwc_out"] = 1
            for r in rs:
                for p in readers[r.outputs[0]]:
                    p.attrs["_nhwc_in"] = 1


def _pooled_dq(g: Graph, readers: dict[str, list[Node]], r: Node) -> bool:
    """r is a per-tensor DequantizeLinear whose output only GlobalAveragePools read."""
    if r.op != "DequantizeLinear" or r.domain not in ("", "ai.onnx"):
        return False
    if r.inputs[1] not in g.consts or g.consts[r.inputs[1]].size != 1 or r.outputs[0] in g.outputs:
        return False
    if len(r.inputs) > 2 and r.inputs[2] and (r.inputs[2] not in g.consts or
                                               g.consts[r.inputs[2]].size != 1):
        return False
    ps = readers.get(r.outputs[0], [])
    return bool(ps) and all(p.op == "GlobalAveragePool" and p.inputs[0] == r.outputs[0]
                            for p in ps)


# -- dtype="int8": QDQ patterns -> QLinear ops ----------------------------------------------------

def prepare(g: Graph, dtype: str) -> None:
    """For dtype="int8", rewrite DQ -> Conv|MatMul [-> Relu] -> Q into QLinearConv /
    QLinearMatMul (see the file banner); then fold what is constant."""
    if dtype != "int8":
        return
    from .graph import _fold_constants
    producers = {t: n for n in g.nodes for t in n.outputs if t}
    readers: dict[str, list[Node]] = {}
    for n in g.nodes:
        for t in n.inputs:
            if t:
                readers.setdefault(t, []).append(n)
    remove: set[int] = set()
    for n in list(g.nodes):
        if n.op not in ("Conv", "MatMul", "Gemm") or n.domain:
            continue
        if n.op == "Gemm" and not _gemm_int8_ok(g, n):
            continue
        dq_x = producers.get(n.inputs[0])
        dq_w = producers.get(n.inputs[1])
        if not (dq_x and dq_w and dq_x.op == dq_w.op == "DequantizeLinear"):
            continue
        if dq_w.inputs[0] not in g.consts or not all(t in g.consts for t in dq_x.inputs[1:] if t) \
                or not all(t in g.consts for t in dq_w.inputs[1:] if t):
            continue
        out = n.outputs[0]
        tail = readers.get(out, [])
        relu = None
        if len(tail) == 1 and tail[0].op == "Relu" and out not in g.outputs:
            relu = tail[0]
            tail = readers.get(relu.outputs[0], [])
            out = relu.outputs[0]
        if len(tail) != 1 or tail[0].op != "QuantizeLinear" or out in g.outputs:
            continue
        q = tail[0]
        if not all(t in g.consts for t in q.inputs[1:] if t):
            continue
        xs = g.consts[dq_x.inputs[1]]
        ws = g.consts[dq_w.inputs[1]]
        if xs.size != 1 or (n.op == "MatMul" and ws.size != 1 and
                            len(g.shapes[dq_w.inputs[0]]) != 2):
            continue
        if n.op == "Gemm" and ws.size != 1:
            # per-channel weights: one scale per output column (B's N axis)
            n_axis = 0 if n.attrs.get("transB", 0) else 1
            if int(dq_w.attrs.get("axis", 1)) % 2 != n_axis:
                continue
        xzp = dq_x.inputs[2] if len(dq_x.inputs) > 2 and dq_x.inputs[2] else _zero(g, n, "xzp", dq_x)
        wzp = dq_w.inputs[2] if len(dq_w.inputs) > 2 and dq_w.inputs[2] else _zero(g, n, "wzp", dq_w)
        yzp = q.inputs[2] if len(q.inputs) > 2 and q.inputs[2] else _zero(g, n, "yzp", None)
        ins = [dq_x.inputs[0], dq_x.inputs[1], xzp, dq_w.inputs[0], dq_w.inputs[1], wzp,
               q.inputs[1], yzp]
        attrs = dict(n.attrs)
        bias_name = ""
        if n.op in ("Conv", "Gemm") and len(n.inputs) > 2 and n.inputs[2]:
            bias = _bias_int32(g, producers, n.inputs[2], float(xs.reshape(-1)[0]),
                               ws.astype(np.float64).reshape(-1))
            if bias is None:
                continue
            bias_name = n.outputs[0] + ".bias_i32"
            g.consts[bias_name], g.shapes[bias_name], g.dtypes[bias_name] = bias, bias.shape, bias.dtype
        if n.op == "Conv":
            if bias_name:
                ins.append(bias_name)
            if relu is not None:
                attrs["_relu"] = 1
            new = Node("QLinearConv", n.name + ".q", ins, [q.outputs[0]], attrs)
        elif n.op == "Gemm":
            ins = ins[:6] + [bias_name] + ins[6:]
            attrs = {"transB": int(n.attrs.get("transB", 0))}
            if relu is not None:
                attrs["_relu"] = 1
            new = Node("QGemm", n.name + ".q", ins, [q.outputs[0]], attrs, "com.microsoft")
        else:
            if relu is not None:
                continue
            new = Node("QLinearMatMul", n.name + ".q", ins, [q.outputs[0]], {})
        g.nodes[g.nodes.index(n)] = new
        remove.add(id(q))
        if relu is not None:
            remove.add(id(relu))
    g.nodes = [n for n in g.nodes if id(n) not in remove]
    _fold_constants(g)
    from .optimize import _drop_dead
    _drop_dead(g)


def _gemm_int8_ok(g: Graph, n: Node) -> bool:
    """A Gemm QGemm can run: A not transposed, alpha = beta = 1, a 2-D A and a 1-D (or absent)
    C that broadcasts along rows."""
    if n.attrs.get("transA", 0) or float(n.attrs.get("alpha", 1.0)) != 1.0 or \
            float(n.attrs.get("beta", 1.0)) != 1.0:
        return False
    if len(g.shapes.get(n.inputs[0], ())) != 2:
        return False
    if len(n.inputs) > 2 and n.inputs[2]:
        cs = g.shapes.get(n.inputs[2], ())
        if len(cs) > 1 and not (len(cs) == 2 and cs[0] == 1):
            return False
    return True


def _zero(g: Graph, n: Node, what: str, dq: Optional[Node]) -> str:
    name = f"{n.name or n.outputs[0]}.{what}"
    dt = g.dtypes.get(dq.inputs[0], np.dtype(np.int8)) if dq is not None else np.dtype(np.int8)
    g.consts[name] = np.zeros((), dt)
    g.shapes[name], g.dtypes[name] = (), np.dtype(dt)
    return name


def _bias_int32(g: Graph, producers: dict[str, Node], t: str, xs: float,
                ws: np.ndarray) -> Optional[np.ndarray]:
    if t in g.consts:
        b = g.consts[t].astype(np.float64).reshape(-1)
        return np.round(b / (xs * ws)).astype(np.int32)
    p = producers.get(t)
    if p is not None and p.op == "DequantizeLinear" and p.inputs[0] in g.consts and \
            g.consts[p.inputs[0]].dtype == np.int32:
        return g.consts[p.inputs[0]].astype(np.int32).reshape(-1)
    return None
