"""The sensor path's op library: one kernel per ONNX op, emitted as LLVM IR through a KernelCtx.

A kernel is `def k(ctx)`: it reads its node's inputs through `ctx.ptr(name)` (a function argument,
or a module constant for weights), writes its outputs, and passes every output value through
`ctx.epilogue(v, coords)` so a fused elementwise tail (optimize.py) costs no extra pass. Loops run
over static trip counts with the unit-stride loop innermost, so LLVM's loop vectoriser does the
SIMD work for whatever target the module is built for. `SCRATCH` sizes a kernel's temporary
buffer (padding, a transposed accumulator, the recurrent state), placed in the workspace.

Layout: activations are NCHW except between the convs of a depthwise-separable chain, which
`choose_layouts` keeps channels-last (the depthwise kernel vectorises over channels, the pointwise
conv is a [pixels, C] x [C, CO] GEMM), so layouts change only at the chain's edges.

Each op has its reference test against onnxruntime in tests/test_sensor_ops.py. Semantics follow
the ONNX operator documents (opset 7..21 as the attributes say); what is refused is refused by
name at compile time (UnsupportedModelError).

Transcendentals are polynomial approximations written in IR (no libm call inside a loop, so loops
vectorise): exp and tanh after Cephes' single-precision routines (about 2 ulp), erf after
Abramowitz & Stegun 7.1.26 (1.5e-7 absolute); the GRU/LSTM gates use a [13/6] rational tanh (and
sigmoid through it), as onnxruntime's MLAS does. NaN propagates through every one of them.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from .codegen import KernelCtx, broadcast_strides
from .graph import Graph, Node

Kernel = Callable[[KernelCtx], None]


def _unsupported(n: Node, what: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{n.where()}: {what} is not supported by the sensor path "
                                 f"(compile with fallback='onnxruntime' to run it there)")


# =============================================================================================
# scalar math in IR
# =============================================================================================

def _intr(ctx: KernelCtx, name: str, ty: Any = None) -> Any:
    return ctx.cg.module.declare_intrinsic(name, [ty or ctx.f32])


def _intr2(ctx: KernelCtx, name: str) -> Any:
    """A two-operand f32 intrinsic (copysign, pow, minnum...) declared with its real signature."""
    full = f"{name}.f32"
    mod = ctx.cg.module
    if full in mod.globals:
        return mod.globals[full]
    ir = ctx.ir
    return ir.Function(mod, ir.FunctionType(ctx.f32, [ctx.f32, ctx.f32]), name=full)


def _select_lt(ctx: KernelCtx, x: Any, c: float, a: Any, bv: Any) -> Any:
    return ctx.b.select(ctx.b.fcmp_ordered("<", x, ctx.cf(c)), a, bv)


def m_exp(ctx: KernelCtx, x: Any) -> Any:
    b, cf = ctx.b, ctx.cf
    # NaN and +-inf go through the clamps (unordered compare) so the integer path stays defined;
    # the final selects restore them.
    xc = b.select(b.fcmp_unordered(">", x, cf(88.3762626647949)), cf(88.3762626647949), x)
    xc = b.select(b.fcmp_ordered("<", xc, cf(-88.3762626647949)), cf(-88.3762626647949), xc)
    fx = b.call(_intr(ctx, "llvm.floor"), [b.fadd(b.fmul(xc, cf(1.44269504088896341),
                                                         flags=("contract",)), cf(0.5),
                                                  flags=("contract",))])
    r = b.fsub(xc, b.fmul(fx, cf(0.693359375)), flags=("contract",))
    r = b.fsub(r, b.fmul(fx, cf(-2.12194440e-4)), flags=("contract",))
    z = b.fmul(r, r)
    p = cf(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
              5.0000001201e-1):
        p = b.fadd(b.fmul(p, r, flags=("contract",)), cf(c), flags=("contract",))
    y = b.fadd(b.fadd(b.fmul(p, z, flags=("contract",)), r, flags=("contract",)), cf(1.0))
    n = b.fptosi(fx, ctx.i32)
    bits = b.shl(b.add(n, ctx.ir.Constant(ctx.i32, 127)), ctx.ir.Constant(ctx.i32, 23))
    y = b.fmul(y, b.bitcast(bits, ctx.f32))
    y = b.select(b.fcmp_ordered(">", x, cf(88.72283935546875)), cf(math.inf), y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def m_sigmoid(ctx: KernelCtx, x: Any) -> Any:
    b = ctx.b
    e = m_exp(ctx, b.fneg(x))
    return b.fdiv(ctx.cf(1.0), b.fadd(ctx.cf(1.0), e))


def m_tanh(ctx: KernelCtx, x: Any) -> Any:
    b, cf = ctx.b, ctx.cf
    ax = b.call(_intr(ctx, "llvm.fabs"), [x])
    # small |x|: odd polynomial (no cancellation); large: 1 - 2/(exp(2|x|)+1), sign restored
    z = b.fmul(x, x)
    p = cf(-5.70498872745e-3)
    for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
        p = b.fadd(b.fmul(p, z, flags=("contract",)), cf(c), flags=("contract",))
    small = b.fadd(b.fmul(b.fmul(p, z), x, flags=("contract",)), x, flags=("contract",))
    e = m_exp(ctx, b.fmul(ax, cf(2.0)))
    big = b.fsub(cf(1.0), b.fdiv(cf(2.0), b.fadd(e, cf(1.0))))
    big = b.call(_intr2(ctx, "llvm.copysign"), [big, x])
    return b.select(b.fcmp_ordered("<", ax, cf(0.625)), small, big)


# The recurrent gates' tanh: a [13/6] odd rational function on x clamped to +-7.9053 (where
# float tanh is 1), as in Eigen and onnxruntime's MLAS: one division and no exp, a few ulp. Only
# the GRU/LSTM gates use it (their inputs are bounded sums; onnxruntime computes them the same
# way); the Tanh and Sigmoid ops keep the exp-based forms above.
_TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
             5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
             4.89352455891786e-03)
_TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
             4.89352518554385e-03)


def m_tanh_gate(ctx: KernelCtx, x: Any, c: Optional[Callable[[float], Any]] = None) -> Any:
    """x: a float or a float vector (then c makes the matching splat constants). Near 0 the
    rational's p(0)/q(0) = 1 - 1.3e-7 keeps the relative error below 2e-7, so no small-x branch."""
    b = ctx.b
    c = c or ctx.cf
    lim = 7.90531110763549805
    xc = b.select(b.fcmp_ordered("<", x, c(-lim)), c(-lim), x)  # ordered: NaN passes through
    xc = b.select(b.fcmp_ordered(">", xc, c(lim)), c(lim), xc)
    z = b.fmul(xc, xc)
    # Estrin-style halves: two short Horner chains side by side (the gate is latency bound)
    z2 = b.fmul(z, z)

    def poly(cs: Sequence[float]) -> Any:  # cs: highest degree first, in z
        cs = list(cs)
        if len(cs) % 2:
            cs = [0.0] + cs
        pairs = [b.fadd(b.fmul(c(cs[i]), z, flags=("contract",)), c(cs[i + 1]),
                        flags=("contract",)) if cs[i] else c(cs[i + 1])
                 for i in range(0, len(cs), 2)]
        acc = pairs[0]
        for pr in pairs[1:]:
            acc = b.fadd(b.fmul(acc, z2, flags=("contract",)), pr, flags=("contract",))
        return acc
    return b.fdiv(b.fmul(xc, poly(_TANH_NUM)), poly(_TANH_DEN))


def m_sigmoid_gate(ctx: KernelCtx, x: Any, c: Optional[Callable[[float], Any]] = None) -> Any:
    """sigmoid(x) = 0.5 + 0.5 tanh(x / 2): absolute error a few 1e-8 (a gate's scale)."""
    b = ctx.b
    c = c or ctx.cf
    t = m_tanh_gate(ctx, b.fmul(x, c(0.5)), c)
    return b.fadd(b.fmul(t, c(0.5), flags=("contract",)), c(0.5), flags=("contract",))


def m_erf(ctx: KernelCtx, x: Any) -> Any:
    b, cf = ctx.b, ctx.cf
    ax = b.call(_intr(ctx, "llvm.fabs"), [x])
    t = b.fdiv(cf(1.0), b.fadd(cf(1.0), b.fmul(ax, cf(0.3275911))))
    p = cf(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p = b.fadd(b.fmul(p, t, flags=("contract",)), cf(c), flags=("contract",))
    p = b.fmul(p, t)
    e = m_exp(ctx, b.fneg(b.fmul(ax, ax)))
    y = b.fsub(cf(1.0), b.fmul(p, e))
    return b.call(_intr2(ctx, "llvm.copysign"), [y, x])


def m_clamp(ctx: KernelCtx, x: Any, lo: Optional[float], hi: Optional[float]) -> Any:
    """Clip that lets NaN through (the compares are ordered: false for NaN); x a scalar or a
    vector of f32."""
    b, ir = ctx.b, ctx.ir

    def c(v: float) -> Any:
        if isinstance(x.type, ir.VectorType):
            return ir.Constant(x.type, [float(v)] * x.type.count)
        return ctx.cf(v)
    if lo is not None and lo > -math.inf:
        x = b.select(b.fcmp_ordered("<", x, c(lo)), c(lo), x)
    if hi is not None and hi < math.inf:
        x = b.select(b.fcmp_ordered(">", x, c(hi)), c(hi), x)
    return x


def _libm(ctx: KernelCtx, name: str, x: Any) -> Any:
    return ctx.b.call(_intr(ctx, name), [x])


def eval_op(ctx: KernelCtx, op: str, attrs: dict[str, Any], args: Sequence[Any]) -> Any:
    """One elementwise op on scalar f32 IR values."""
    b, cf = ctx.b, ctx.cf
    x = args[0]
    if op == "Add":
        return b.fadd(x, args[1])
    if op == "Sub":
        return b.fsub(x, args[1])
    if op == "Mul":
        return b.fmul(x, args[1])
    if op == "Div":
        return b.fdiv(x, args[1])
    if op == "Max":  # ORT: NaN in either operand gives NaN
        y = b.select(b.fcmp_ordered(">", args[1], x), args[1], x)
        return b.select(b.fcmp_unordered("uno", args[1], args[1]), args[1], y)
    if op == "Min":
        y = b.select(b.fcmp_ordered("<", args[1], x), args[1], x)
        return b.select(b.fcmp_unordered("uno", args[1], args[1]), args[1], y)
    if op == "Pow":
        return b.call(_intr2(ctx, "llvm.pow"), [x, args[1]])
    if op == "PRelu":
        return _select_lt(ctx, x, 0.0, b.fmul(x, args[1]), x)
    if op == "Relu":
        return _select_lt(ctx, x, 0.0, cf(0.0), x)
    if op == "LeakyRelu":
        return _select_lt(ctx, x, 0.0, b.fmul(x, cf(attrs.get("alpha", 0.01))), x)
    if op == "Sigmoid":
        return m_sigmoid(ctx, x)
    if op == "Tanh":
        return m_tanh(ctx, x)
    if op == "Erf":
        return m_erf(ctx, x)
    if op == "Gelu":
        if attrs.get("approximate", "none") == "tanh":
            inner = b.fmul(cf(math.sqrt(2.0 / math.pi)),
                           b.fadd(x, b.fmul(cf(0.044715), b.fmul(x, b.fmul(x, x)))))
            t = m_tanh(ctx, inner)
        else:
            t = m_erf(ctx, b.fmul(x, cf(1.0 / math.sqrt(2.0))))
        return b.fmul(b.fmul(cf(0.5), x), b.fadd(cf(1.0), t))
    if op == "HardSigmoid":
        y = b.fadd(b.fmul(x, cf(attrs.get("alpha", 0.2))), cf(attrs.get("beta", 0.5)))
        return m_clamp(ctx, y, 0.0, 1.0)
    if op == "HardSwish":
        y = m_clamp(ctx, b.fadd(b.fmul(x, cf(1.0 / 6.0)), cf(0.5)), 0.0, 1.0)
        return b.fmul(x, y)
    if op == "Clip":
        lo = attrs.get("min", -math.inf)
        hi = attrs.get("max", math.inf)
        return m_clamp(ctx, x, lo, hi)
    if op == "Exp":
        return m_exp(ctx, x)
    if op == "Log":
        return _libm(ctx, "llvm.log", x)
    if op == "Sqrt":
        return _libm(ctx, "llvm.sqrt", x)
    if op == "Neg":
        return b.fneg(x)
    if op == "Abs":
        return _libm(ctx, "llvm.fabs", x)
    if op == "Floor":
        return _libm(ctx, "llvm.floor", x)
    if op == "Ceil":
        return _libm(ctx, "llvm.ceil", x)
    if op == "Sin":
        return _libm(ctx, "llvm.sin", x)
    if op == "Cos":
        return _libm(ctx, "llvm.cos", x)
    if op == "Reciprocal":
        return b.fdiv(cf(1.0), x)
    if op == "Sign":
        pos = b.uitofp(b.fcmp_ordered(">", x, cf(0.0)), ctx.f32)
        neg = b.uitofp(b.fcmp_ordered("<", x, cf(0.0)), ctx.f32)
        return b.select(b.fcmp_unordered("uno", x, x), x, b.fsub(pos, neg))
    if op == "Softplus":  # max(x, 0) + log(1 + exp(-|x|)): no overflow for large x
        ax = _libm(ctx, "llvm.fabs", x)
        lg = _libm(ctx, "llvm.log", b.fadd(cf(1.0), m_exp(ctx, b.fneg(ax))))
        return b.fadd(_select_lt(ctx, x, 0.0, cf(0.0), x), lg)
    if op == "Elu":
        a = attrs.get("alpha", 1.0)
        return _select_lt(ctx, x, 0.0, b.fmul(cf(a), b.fsub(m_exp(ctx, x), cf(1.0))), x)
    if op == "Selu":
        a = attrs.get("alpha", 1.67326319217681884765625)
        g = attrs.get("gamma", 1.05070102214813232421875)
        neg = b.fmul(cf(a), b.fsub(m_exp(ctx, x), cf(1.0)))
        return b.fmul(cf(g), _select_lt(ctx, x, 0.0, neg, x))
    raise KeyError(op)


def uniform_epilogue(ctx: KernelCtx) -> Optional[Callable[[Any], Any]]:
    """The node's fused tail as a function of the producer's value, a scalar or a vector, where
    it is a chain of Relu / Clip with no operand tensors (the same at every element): a GEMM
    applies it in registers before its stores (microkernels.gemm's epilogue) instead of a pass
    over the output. None otherwise. The same selects as eval_op (m_clamp: NaN passes
    through)."""
    prog = ctx.epilogue_program
    if not prog or ctx.epilogue_inputs or any(op not in ("Relu", "Clip") for op, _, _ in prog):
        return None

    def apply(v: Any) -> Any:
        vals = [v]
        for op, attrs, args in prog:
            lo, hi = (0.0, None) if op == "Relu" else (attrs.get("min"), attrs.get("max"))
            vals.append(m_clamp(ctx, vals[args[0]], lo, hi))
        return vals[-1]
    return apply


def eval_program(ctx: KernelCtx, program: Sequence[Any], operands: Sequence[Any]) -> Any:
    vals = list(operands)
    for op, attrs, args in program:
        vals.append(eval_op(ctx, op, attrs, [vals[a] for a in args]))
    return vals[-1]


# =============================================================================================
# elementwise (fused chains) and data movement
# =============================================================================================

def _collapse(out_shape: Sequence[int], strides: list[list[int]]) -> tuple[list[int],
                                                                           list[list[int]]]:
    """Merge adjacent dims that every operand walks contiguously (fewer, longer loops)."""
    dims = [d for d in out_shape]
    if not dims:
        return [1], [[0] for _ in strides]
    out_dims = [dims[-1]]
    out_strides = [[s[-1]] for s in strides]
    for d in range(len(dims) - 2, -1, -1):
        inner = out_dims[0]
        if dims[d] == 1:
            continue
        if all(s[d] == o[0] * inner for s, o in zip(strides, out_strides)):
            out_dims[0] *= dims[d]
            continue
        out_dims.insert(0, dims[d])
        for s, o in zip(strides, out_strides):
            o.insert(0, s[d])
    return out_dims, out_strides


def _nest(ctx: KernelCtx, dims: Sequence[int], body: Callable[[list[Any]], None],
          coords: Optional[list[Any]] = None, d: int = 0) -> None:
    coords = coords or []
    if d == len(dims):
        body(coords)
        return
    with ctx.loop(dims[d], name=f"d{d}") as i:
        _nest(ctx, dims, body, coords + [i], d + 1)


def k_elementwise(ctx: KernelCtx) -> None:
    n = ctx.node
    out = n.outputs[0]
    out_shape = ctx.shape(out)
    ins = n.inputs
    in_strides = [broadcast_strides(ctx.shape(t), out_shape) for t in ins]
    contig = broadcast_strides(out_shape, out_shape)
    dims, strides = _collapse(out_shape, [contig] + in_strides)
    optr = ctx.ptr(out)
    ptrs = [ctx.ptr(t) for t in ins]
    scalars = {}
    for k, t in enumerate(ins):
        c = ctx.const(t)
        if c is not None and c.size == 1:
            scalars[k] = float(c.reshape(-1)[0])

    def body(coords: list[Any]) -> None:
        vals = []
        for k, t in enumerate(ins):
            if k in scalars:
                vals.append(ctx.cf(scalars[k]))
                continue
            off = ctx.add(*[ctx.mul(c, s) for c, s in zip(coords, strides[k + 1]) if s])
            vals.append(ctx.load(ptrs[k], off))
        v = eval_program(ctx, n.attrs["program"], vals)
        ctx.store(v, optr, ctx.add(*[ctx.mul(c, s) for c, s in zip(coords, strides[0]) if s]))

    _nest(ctx, dims, body)


def _strided_copy(ctx: KernelCtx, src: Any, dst: Any, dims: Sequence[int],
                  src_strides: Sequence[int], src_base: int = 0, ty: Any = None) -> None:
    """dst (contiguous over dims) = src at base + sum(coord * stride)."""
    contig = broadcast_strides(dims, dims)
    cd, cs = _collapse(dims, [contig, list(src_strides)])

    def body(coords: list[Any]) -> None:
        so = ctx.add(src_base, *[ctx.mul(c, s) for c, s in zip(coords, cs[1]) if s])
        do = ctx.add(*[ctx.mul(c, s) for c, s in zip(coords, cs[0]) if s])
        ctx.store(ctx.load(src, so, ty), dst, do)

    _nest(ctx, cd, body)


def _elem_ty(ctx: KernelCtx, t: str) -> Any:
    return ctx.cg.ir_type(ctx.dtype(t))


def _contig_strides(shape: Sequence[int]) -> list[int]:
    s, out = 1, []
    for d in reversed(shape):
        out.insert(0, s)
        s *= d
    return out


def k_transpose(ctx: KernelCtx) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    shp = ctx.shape(x)
    perm = n.attrs.get("perm", list(range(len(shp)))[::-1])
    st = _contig_strides(shp)
    _strided_copy(ctx, ctx.ptr(x), ctx.ptr(y), ctx.shape(y), [st[p] for p in perm],
                  ty=_elem_ty(ctx, x))


def k_concat(ctx: KernelCtx) -> None:
    n = ctx.node
    y = n.outputs[0]
    oshape = ctx.shape(y)
    axis = n.attrs["axis"] % len(oshape)
    outer = int(np.prod(oshape[:axis]))
    after = int(np.prod(oshape[axis + 1:]))
    esz = ctx.dtype(y).itemsize
    off = 0
    for t in n.inputs:
        if not t:
            continue
        blk = ctx.shape(t)[axis] * after
        if blk:
            src, dst = ctx.ptr(t), ctx.ptr(y)
            if outer == 1:
                ctx.memcpy(ctx.gep(dst, off * esz, ctx.i8), src, blk * esz)
            else:
                with ctx.loop(outer, name="o") as o:
                    so = ctx.mul(o, blk * esz)
                    do = ctx.add(ctx.mul(o, oshape[axis] * after * esz), off * esz)
                    ctx.memcpy(ctx.gep(dst, do, ctx.i8), ctx.gep(src, so, ctx.i8), blk * esz)
        off += blk


def _const_ints(ctx: KernelCtx, t: str, what: str) -> Optional[list[int]]:
    if not t:
        return None
    c = ctx.const(t)
    if c is None:
        raise _unsupported(ctx.node, f"a non-constant {what}")
    return [int(v) for v in c.reshape(-1)]


def k_slice(ctx: KernelCtx) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    shp = ctx.shape(x)
    if len(n.inputs) > 1:
        starts = _const_ints(ctx, n.inputs[1], "Slice start") or []
        ends = _const_ints(ctx, n.inputs[2], "Slice end") or []
        axes = _const_ints(ctx, n.inputs[3], "Slice axes") if len(n.inputs) > 3 else None
        steps = _const_ints(ctx, n.inputs[4], "Slice steps") if len(n.inputs) > 4 else None
    else:  # opset < 10: attributes
        starts, ends = list(n.attrs["starts"]), list(n.attrs["ends"])
        axes, steps = n.attrs.get("axes"), None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    st = _contig_strides(shp)
    base = 0
    strides = list(st)
    for s, e, a, k in zip(starts, ends, axes, steps):
        a %= len(shp)
        dim = shp[a]
        if k == 0:
            raise ModelFormatError(f"{n.where()}: a Slice step of 0")
        s = s + dim if s < 0 else s
        if k > 0:
            s = min(max(s, 0), dim)
        else:
            s = min(max(s, 0), dim - 1)
        base += s * st[a]
        strides[a] = st[a] * k
    _strided_copy(ctx, ctx.ptr(x), ctx.ptr(y), ctx.shape(y), strides, base, _elem_ty(ctx, x))


def k_split(ctx: KernelCtx) -> None:
    n = ctx.node
    x = n.inputs[0]
    shp = ctx.shape(x)
    axis = n.attrs.get("axis", 0) % len(shp)
    st = _contig_strides(shp)
    off = 0
    for t in n.outputs:
        if not t:
            continue
        oshape = ctx.shape(t)
        _strided_copy(ctx, ctx.ptr(x), ctx.ptr(t), oshape, st, off * st[axis], _elem_ty(ctx, x))
        off += oshape[axis]


def k_gather(ctx: KernelCtx) -> None:
    n = ctx.node
    x, idx_t, y = n.inputs[0], n.inputs[1], n.outputs[0]
    idx = ctx.const(idx_t)
    if idx is None:
        raise _unsupported(n, "Gather with run-time indices")
    shp = ctx.shape(x)
    axis = n.attrs.get("axis", 0) % len(shp)
    flat = [int(v) + (shp[axis] if v < 0 else 0) for v in idx.reshape(-1)]
    if any(v < 0 or v >= shp[axis] for v in flat):
        raise ModelFormatError(f"{n.where()}: a Gather index is out of range for dim "
                               f"{shp[axis]}")
    st = _contig_strides(shp)
    outer = int(np.prod(shp[:axis]))
    inner = int(np.prod(shp[axis + 1:]))
    ty = _elem_ty(ctx, x)
    for j, v in enumerate(flat):  # indices are few in sensor graphs (a last time step, a channel)
        _strided_copy(ctx, ctx.ptr(x), ctx.gep(ctx.ptr(y), j * inner, ty), [outer, inner],
                      [st[axis] * shp[axis] if axis > 0 else 0, 1], v * st[axis], ty) \
            if outer == 1 else _gather_rows(ctx, x, y, outer, inner, shp[axis], len(flat), j, v)


def _gather_rows(ctx: KernelCtx, x: str, y: str, outer: int, inner: int, dim: int, n_idx: int,
                 j: int, v: int) -> None:
    ty = _elem_ty(ctx, x)
    src, dst = ctx.ptr(x), ctx.ptr(y)
    with ctx.loop(outer, name="o") as o:
        with ctx.loop(inner, name="k") as k:
            s = ctx.add(ctx.mul(o, dim * inner), v * inner, k)
            d = ctx.add(ctx.mul(o, n_idx * inner), j * inner, k)
            ctx.store(ctx.load(src, s, ty), dst, d)


# =============================================================================================
# Gemm / MatMul
# =============================================================================================

AXPY_MIN_N = 16  # below this many output columns a dot-product loop vectorises better


def _gemm(ctx: KernelCtx, M: int, N: int, K: int, a_ptr: Any, a_at: Callable[[Any, Any], Any],
          b_const: Optional[np.ndarray], b_ptr: Any, b_strides: tuple[int, int],
          bias: Optional[Callable[[Any, Any], Any]], y_ptr: Any, y_base: Any,
          coords_prefix: Sequence[Any], alpha: float = 1.0) -> None:
    """y[m, n] = alpha * sum_k A(m, k) B(k, n) + bias(m, n), then the epilogue.

    A constant B is re-laid out for the loop that vectorises: [K, N] (axpy rows, N wide) or
    [N, K] (dot products, K long)."""
    b = ctx.b
    axpy = N >= AXPY_MIN_N
    if b_const is not None:
        w = b_const.astype(np.float32) * np.float32(alpha)
        w = np.ascontiguousarray(w if axpy else w.T)
        bp = ctx.array_ptr(w, "gemm_w")
        sk, sn = (N, 1) if axpy else (1, K)
        scale = None
    else:
        bp = b_ptr
        sk, sn = b_strides
        scale = alpha if alpha != 1.0 else None
        axpy = axpy and sn == 1
    with ctx.loop(M, name="m") as m:
        row = ctx.add(y_base, ctx.mul(m, N))
        if axpy:
            with ctx.loop(N, name="n0") as n:
                v = bias(m, n) if bias else ctx.cf(0.0)
                ctx.store(v, y_ptr, ctx.add(row, n))
            with ctx.loop(K, name="k") as k:
                a = a_at(m, k)
                if scale is not None:
                    a = b.fmul(a, ctx.cf(scale))
                with ctx.loop(N, name="n") as n:
                    yo = ctx.add(row, n)
                    acc = ctx.load(y_ptr, yo)
                    wv = ctx.load(bp, ctx.add(ctx.mul(k, sk), ctx.mul(n, sn)))
                    ctx.store(ctx.fma(acc, a, wv), y_ptr, yo)
            if ctx.has_epilogue:
                with ctx.loop(N, name="ne") as n:
                    yo = ctx.add(row, n)
                    v = ctx.epilogue(ctx.load(y_ptr, yo), list(coords_prefix) + [m, n])
                    ctx.store(v, y_ptr, yo)
        else:
            with ctx.loop(N, name="n") as n:
                acc_ptr = ctx.alloca()
                b.store(ctx.cf(0.0), acc_ptr)
                with ctx.loop(K, name="k") as k:
                    acc = b.load(acc_ptr, typ=ctx.f32)
                    wv = ctx.load(bp, ctx.add(ctx.mul(k, sk), ctx.mul(n, sn)))
                    b.store(ctx.fma(acc, a_at(m, k), wv), acc_ptr)
                v = b.load(acc_ptr, typ=ctx.f32)
                if scale is not None:
                    v = b.fmul(v, ctx.cf(scale))
                if bias:
                    v = b.fadd(v, bias(m, n))
                v = ctx.epilogue(v, list(coords_prefix) + [m, n])
                ctx.store(v, y_ptr, ctx.add(row, n))


def k_gemm(ctx: KernelCtx) -> None:
    n = ctx.node
    A, B = n.inputs[0], n.inputs[1]
    C = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    y = n.outputs[0]
    ta, tb = n.attrs.get("transA", 0), n.attrs.get("transB", 0)
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    M, N = ctx.shape(y)
    ashp, bshp = ctx.shape(A), ctx.shape(B)
    K = ashp[0] if ta else ashp[1]
    if (bshp[1] if tb else bshp[0]) != K or (ashp[1] if ta else ashp[0]) != M:
        raise ModelFormatError(f"{n.where()}: A {ashp} and B {bshp} do not multiply to {(M, N)}")
    ap = ctx.ptr(A)

    def a_at(m: Any, k: Any) -> Any:
        return ctx.load(ap, ctx.add(ctx.mul(k, M), m) if ta else ctx.add(ctx.mul(m, K), k))

    bc = ctx.const(B)
    if bc is not None:
        bc = bc.reshape(bshp).T if tb else bc.reshape(bshp)
    if tiled_kernels() and _gemm_tiled(ctx, M, N, K, A, ta, bc, B, tb, C, alpha, beta, y):
        return
    bias = None
    if C is not None and beta != 0.0:
        cc = ctx.const(C)
        if cc is not None:
            full = np.broadcast_to(cc.astype(np.float32) * np.float32(beta), (M, N))
            if (full == full[0:1]).all() or M == 1:
                vec = ctx.array_ptr(np.ascontiguousarray(full[0]), "gemm_bias")
                bias = lambda m, nn: ctx.load(vec, nn)  # noqa: E731
            else:
                mat = ctx.array_ptr(np.ascontiguousarray(full), "gemm_bias")
                bias = lambda m, nn: ctx.load(mat, ctx.add(ctx.mul(m, N), nn))  # noqa: E731
        else:
            cp, cs = ctx.ptr(C), broadcast_strides(ctx.shape(C), (M, N))

            def bias(m: Any, nn: Any) -> Any:
                v = ctx.load(cp, ctx.add(ctx.mul(m, cs[0]), ctx.mul(nn, cs[1])))
                return ctx.b.fmul(v, ctx.cf(beta)) if beta != 1.0 else v
    _gemm(ctx, M, N, K, ap, a_at, bc, None if bc is not None else ctx.ptr(B),
          (1, K) if tb else (N, 1), bias, ctx.ptr(y), ctx.ci(0), [], alpha)


def _gemm_tiled(ctx: KernelCtx, M: int, N: int, K: int, A: str, ta: int,
                bc: Optional[np.ndarray], B: str, tb: int, C: Optional[str], alpha: float,
                beta: float, y: str) -> bool:
    """Gemm on the register-tiled kernel; False when the case is left to the plain loops (a
    run-time transposed B or bias, a bias that is not one row broadcast)."""
    from . import microkernels as mk
    col_bias = None
    if C is not None and beta != 0.0:
        cc = ctx.const(C)
        if cc is None:
            return False
        full = np.broadcast_to(cc.astype(np.float32) * np.float32(beta), (M, N))
        if not (M == 1 or (full == full[0:1]).all()):
            return False
        col_bias = ctx.array_ptr(np.ascontiguousarray(full[0]), "gemm_bias")
    if bc is not None:
        pb = ctx.array_ptr(np.ascontiguousarray(bc.astype(np.float32) * np.float32(alpha)),
                           "gemm_w")
    elif tb or alpha != 1.0:
        return False
    else:
        pb = ctx.ptr(B)
    lda, acs = (1, M) if ta else (K, 1)
    yp = ctx.ptr(y)
    mk.gemm(ctx, M, N, K, ctx.ptr(A), ctx.ci(0), lda, pb, ctx.ci(0), N, yp, ctx.ci(0), N,
            col_bias=col_bias, a_col_stride=acs)
    _epilogue_pass(ctx, yp, [M, N])
    return True


def k_matmul(ctx: KernelCtx) -> None:
    n = ctx.node
    A, B, y = n.inputs[0], n.inputs[1], n.outputs[0]
    ashp, bshp, yshp = list(ctx.shape(A)), list(ctx.shape(B)), list(ctx.shape(y))
    a2 = [1] + ashp if len(ashp) == 1 else ashp
    b2 = bshp + [1] if len(bshp) == 1 else bshp
    M, K = a2[-2], a2[-1]
    N = b2[-1]
    if b2[-2] != K:
        raise ModelFormatError(f"{n.where()}: MatMul of {tuple(ashp)} and {tuple(bshp)}")
    batch = list(np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
    if int(np.prod(batch + [M, N])) != int(np.prod(yshp)):
        raise ModelFormatError(f"{n.where()}: MatMul output {tuple(yshp)} is not {batch + [M, N]}")
    a_bs = broadcast_strides(a2[:-2], batch) if batch else []
    b_bs = broadcast_strides(b2[:-2], batch) if batch else []
    ap, yp = ctx.ptr(A), ctx.ptr(y)
    bc = ctx.const(B)
    # coords for the epilogue are in the output's own rank
    def run(bcoords: list[Any]) -> None:
        a_off = ctx.add(*[ctx.mul(c, s * M * K) for c, s in zip(bcoords, a_bs) if s])
        b_off = ctx.add(*[ctx.mul(c, s * K * N) for c, s in zip(bcoords, b_bs) if s])
        y_base = ctx.add(*[ctx.mul(c, s) for c, s in
                          zip(bcoords, _contig_strides(batch + [M, N])[:len(batch)])])

        def a_at(m: Any, k: Any) -> Any:
            return ctx.load(ap, ctx.add(a_off, ctx.mul(m, K), k))

        prefix = list(bcoords)
        if tiled_kernels():
            from . import microkernels as mk
            if bc is not None and not any(b_bs):
                pb, pb_off = ctx.array_ptr(np.ascontiguousarray(
                    bc.reshape(b2).reshape(-1, K, N)[0].astype(np.float32)), "matmul_w"), ctx.ci(0)
            else:
                pb, pb_off = ctx.ptr(B), b_off
            mk.gemm(ctx, M, N, K, ap, a_off, K, pb, pb_off, N, yp, y_base, N)
            return
        if bc is not None and not any(b_bs):
            w = bc.reshape(b2)
            w = w.reshape(-1, K, N)[0]
            _gemm_y(ctx, M, N, K, ap, a_at, w, None, (N, 1), yp, y_base, prefix, yshp, len(ashp),
                    len(bshp))
        else:
            bp = ctx.ptr(B)
            # run-time B: offset B's pointer for this batch
            bptr = ctx.gep(bp, b_off) if b_bs and any(b_bs) else bp
            _gemm_y(ctx, M, N, K, ap, a_at, None, bptr, (N, 1), yp, y_base, prefix, yshp,
                    len(ashp), len(bshp))
    _nest(ctx, batch, run) if batch else run([])
    if tiled_kernels():
        _epilogue_pass(ctx, yp, yshp)


def _gemm_y(ctx: KernelCtx, M: int, N: int, K: int, ap: Any, a_at: Any, w: Optional[np.ndarray],
            bp: Any, bst: tuple[int, int], yp: Any, y_base: Any, prefix: list[Any],
            yshp: Sequence[int], arank: int, brank: int) -> None:
    # MatMul's output drops the 1-D operands' unit dims; map (batch, m, n) to the output coords
    saved = ctx.epilogue

    def epi(v: Any, coords: Sequence[Any]) -> Any:
        c = list(coords)
        m, nn = c[-2], c[-1]
        out = c[:-2]
        if arank > 1:
            out.append(m)
        if brank > 1:
            out.append(nn)
        out = [ctx.ci(0)] * (len(yshp) - len(out)) + out
        return saved(v, out)

    ctx.epilogue = epi  # type: ignore[method-assign]
    try:
        _gemm(ctx, M, N, K, ap, a_at, w, bp, bst, None, yp, y_base, prefix)
    finally:
        ctx.epilogue = saved  # type: ignore[method-assign]


# =============================================================================================
# convolution and pooling
# =============================================================================================

def _spatial(ctx: KernelCtx, n: Node, x: str, kshape: Sequence[int], y: str,
             dil: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Normalised 2-D geometry (1-D becomes H = 1) with explicit begin/end pads."""
    xs, ys = ctx.shape(x), ctx.shape(y)
    nsp = len(xs) - 2
    if nsp not in (1, 2):
        raise _unsupported(n, f"{nsp}-D spatial input {xs}")
    strides = list(n.attrs.get("strides", [1] * nsp))
    dil = list(dil if dil is not None else n.attrs.get("dilations", [1] * nsp))
    pads = list(n.attrs.get("pads", [0] * (2 * nsp)))
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nsp)
        for i in range(nsp):
            out = -(-xs[2 + i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kshape[i] - 1) * dil[i] + 1 - xs[2 + i])
            small = total // 2
            pads[i], pads[i + nsp] = (small, total - small) if auto == "SAME_UPPER" else \
                (total - small, small)
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    if nsp == 1:
        g = dict(H=1, W=xs[2], OH=1, OW=ys[2], KH=1, KW=kshape[0], sy=1, sx=strides[0], dy=1,
                 dx=dil[0], pt=0, pb=0, pl=pads[0], pr=pads[1])
    else:
        g = dict(H=xs[2], W=xs[3], OH=ys[2], OW=ys[3], KH=kshape[0], KW=kshape[1], sy=strides[0],
                 sx=strides[1], dy=dil[0], dx=dil[1], pt=pads[0], pb=pads[2], pl=pads[1],
                 pr=pads[3])
    g["N"], g["C"], g["CO"] = xs[0], xs[1], ys[1]
    g["nsp"] = nsp
    return g


def _conv_geometry(ctx: KernelCtx, n: Node) -> dict[str, Any]:
    wshape = ctx.shape(n.inputs[1])
    g = _spatial(ctx, n, n.inputs[0], wshape[2:], n.outputs[0])
    g["group"] = int(n.attrs.get("group", 1))
    g["Cg"] = wshape[1]
    if g["C"] != g["Cg"] * g["group"] or wshape[0] != g["CO"] or g["CO"] % g["group"]:
        raise ModelFormatError(f"{n.where()}: weight {wshape} does not match input channels "
                               f"{g['C']} with group {g['group']}")
    g["Hp"] = max(g["H"] + g["pt"] + g["pb"], (g["OH"] - 1) * g["sy"] + (g["KH"] - 1) * g["dy"] + 1)
    g["Wp"] = max(g["W"] + g["pl"] + g["pr"], (g["OW"] - 1) * g["sx"] + (g["KW"] - 1) * g["dx"] + 1)
    g["padded"] = (g["Hp"], g["Wp"]) != (g["H"], g["W"])
    g["pixel_major"] = g["group"] == 1 and g["CO"] >= 8 and not (g["sx"] == 1 and g["OW"] >= 16)
    g["nhwc_in"] = bool(n.attrs.get("_nhwc_in"))
    g["nhwc_out"] = bool(n.attrs.get("_nhwc_out"))
    return g


def _conv_scratch(n: Node, gr: Graph) -> int:
    ctx_like = _ShapeOnly(gr, n)
    g = _conv_geometry(ctx_like, n)  # type: ignore[arg-type]
    plan = _conv_plan(g)
    if plan != "loops":
        return _conv_plan_scratch(g, plan)
    total = 0
    if g["padded"]:
        total += g["C"] * g["Hp"] * g["Wp"] * 4 + 64
    if g["pixel_major"]:
        total += g["OH"] * g["OW"] * g["CO"] * 4 + 64
    return total


class _ShapeOnly:
    """Enough of KernelCtx for the geometry helpers when sizing scratch before codegen."""

    def __init__(self, g: Graph, n: Node) -> None:
        self.g, self.node = g, n

    def shape(self, t: str) -> tuple[int, ...]:
        return tuple(self.g.shapes[t])


def _pad_copy(ctx: KernelCtx, xp: Any, batch: Any, g: dict[str, Any], dst: Any,
              ty: Any = None, fill: Any = None) -> None:
    """dst[C, Hp, Wp] = x[batch] placed at (pt, pl); the border holds `fill` (zero). With zero,
    only the border is cleared (the scratch is shared with other nodes, so every call), not the
    whole buffer: the interior is overwritten by the copy."""
    ty = ty or ctx.f32
    C, H, W, Hp, Wp = g["C"], g["H"], g["W"], g["Hp"], g["Wp"]
    if fill is None:
        esz = 4 if ty == ctx.f32 else 1
        pt, pl = g["pt"], g["pl"]
        pb, pr = Hp - pt - H, Wp - pl - W
        with ctx.loop(C, name="cz") as c:
            plane = ctx.mul(c, Hp * Wp)
            if pt:
                ctx.memset0(ctx.gep(dst, plane, ty), pt * Wp * esz)
            if pb:
                ctx.memset0(ctx.gep(dst, ctx.add(plane, (pt + H) * Wp), ty), pb * Wp * esz)
            if pl or pr:
                with ctx.loop(H, name="hz") as h:
                    row = ctx.add(plane, ctx.mul(h, Wp), pt * Wp)
                    if pl:
                        ctx.memset0(ctx.gep(dst, row, ty), pl * esz)
                    if pr:
                        ctx.memset0(ctx.gep(dst, ctx.add(row, pl + W), ty), pr * esz)
    else:
        with ctx.loop(C * Hp * Wp, name="f") as i:
            ctx.store(fill, dst, i)
    with ctx.loop(C, name="c") as c:
        with ctx.loop(H, name="h") as h:
            with ctx.loop(W, name="w") as w:
                src = ctx.add(ctx.mul(batch, C * H * W), ctx.mul(c, H * W), ctx.mul(h, W), w)
                d = ctx.add(ctx.mul(c, Hp * Wp), ctx.mul(h, Wp), ctx.mul(w, 1),
                            g["pt"] * Wp + g["pl"])
                ctx.store(ctx.load(xp, src, ty), dst, d)


def k_conv_loops(ctx: KernelCtx) -> None:
    """Conv as plain loops (the scalar twin of the tiled paths; grouped convs use it)."""
    n = ctx.node
    x, wt, y = n.inputs[0], n.inputs[1], n.outputs[0]
    bias_t = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    w = ctx.const(wt)
    if w is None:
        raise _unsupported(n, "a Conv whose weights are not constant")
    g = _conv_geometry(ctx, n)
    w = w.astype(np.float32).reshape(g["CO"], g["Cg"], g["KH"], g["KW"])
    bias = ctx.const(bias_t) if bias_t else None
    if bias_t and bias is None:
        raise _unsupported(n, "a Conv whose bias is not constant")
    b = ctx.b
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    N, C, CO, OH, OW = g["N"], g["C"], g["CO"], g["OH"], g["OW"]
    Hp, Wp, KH, KW, Cg, G = g["Hp"], g["Wp"], g["KH"], g["KW"], g["Cg"], g["group"]
    sy, sx, dy, dx = g["sy"], g["sx"], g["dy"], g["dx"]
    COg = CO // G
    P = OH * OW
    pad_buf = ctx.scratch_ptr if g["padded"] else None
    t_buf = None
    if g["pixel_major"]:
        off = (g["C"] * Hp * Wp * 4 + 64) // 64 * 64 if g["padded"] else 0
        t_buf = ctx.gep(ctx.scratch_ptr, off, ctx.i8)
    bias_arr = np.zeros(CO, np.float32) if bias is None else bias.astype(np.float32).reshape(CO)
    bias_p = ctx.array_ptr(bias_arr, "conv_bias")

    def coords(bn: Any, co: Any, p_oy: Any, p_ox: Any) -> list[Any]:
        return [bn, co, p_ox] if g["nsp"] == 1 else [bn, co, p_oy, p_ox]

    with ctx.loop(N, name="b") as bn:
        if pad_buf is not None:
            _pad_copy(ctx, xp, bn, g, pad_buf)
            src, src_base = pad_buf, ctx.ci(0)
        else:
            src, src_base = xp, ctx.mul(bn, C * Hp * Wp)
        y_base = ctx.mul(bn, CO * P)
        if t_buf is not None:
            # pixel-major: T[p, co] += x[ci, iy, ix] * Wt[ci, ky, kx, co] (inner loop over co)
            wt_arr = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(-1, CO))
            wtp = ctx.array_ptr(wt_arr, "conv_wt")
            with ctx.loop(OH, name="oy") as oy:
                with ctx.loop(OW, name="ox") as ox:
                    row = ctx.mul(ctx.add(ctx.mul(oy, OW), ox), CO)
                    with ctx.loop(CO, name="c0") as co:
                        ctx.store(ctx.load(bias_p, co), t_buf, ctx.add(row, co))
                    with ctx.loop(C, name="ci") as ci, ctx.loop(KH, name="ky") as ky, \
                            ctx.loop(KW, name="kx") as kx:
                        iy = ctx.add(ctx.mul(oy, sy), ctx.mul(ky, dy))
                        ix = ctx.add(ctx.mul(ox, sx), ctx.mul(kx, dx))
                        xv = ctx.load(src, ctx.add(src_base, ctx.mul(ci, Hp * Wp),
                                                   ctx.mul(iy, Wp), ix))
                        wrow = ctx.add(ctx.mul(ci, KH * KW * CO), ctx.mul(ky, KW * CO),
                                       ctx.mul(kx, CO))
                        with ctx.loop(CO, name="co") as co:
                            to = ctx.add(row, co)
                            acc = ctx.load(t_buf, to)
                            wv = ctx.load(wtp, ctx.add(wrow, co))
                            ctx.store(ctx.fma(acc, xv, wv), t_buf, to)
            with ctx.loop(CO, name="co") as co:
                with ctx.loop(OH, name="oy") as oy:
                    with ctx.loop(OW, name="ox") as ox:
                        p = ctx.add(ctx.mul(oy, OW), ox)
                        v = ctx.load(t_buf, ctx.add(ctx.mul(p, CO), co))
                        v = ctx.epilogue(v, coords(bn, co, oy, ox))
                        ctx.store(v, yp, ctx.add(y_base, ctx.mul(co, P), p))
        else:
            # plane-major: for each output channel, accumulate its plane (inner loop over ox)
            wp = ctx.array_ptr(np.ascontiguousarray(w.reshape(-1)), "conv_w")
            with ctx.loop(CO, name="co") as co:
                plane = ctx.add(y_base, ctx.mul(co, P))
                bv = ctx.load(bias_p, co)
                with ctx.loop(P, name="p0") as p:
                    ctx.store(bv, yp, ctx.add(plane, p))
                grp = b.sdiv(co, ctx.ci(COg)) if G > 1 else ctx.ci(0)
                with ctx.loop(Cg, name="ci") as ci, ctx.loop(KH, name="ky") as ky, \
                        ctx.loop(KW, name="kx") as kx:
                    c = ctx.add(ctx.mul(grp, Cg), ci)
                    wv = ctx.load(wp, ctx.add(ctx.mul(co, Cg * KH * KW), ctx.mul(ci, KH * KW),
                                              ctx.mul(ky, KW), kx))
                    with ctx.loop(OH, name="oy") as oy:
                        ib = ctx.add(src_base, ctx.mul(c, Hp * Wp), ctx.mul(oy, sy * Wp),
                                     ctx.mul(ky, dy * Wp), ctx.mul(kx, dx))
                        ob = ctx.add(plane, ctx.mul(oy, OW))
                        with ctx.loop(OW, name="ox") as ox:
                            xo = ctx.add(ib, ctx.mul(ox, sx))
                            yo = ctx.add(ob, ox)
                            ctx.store(ctx.fma(ctx.load(yp, yo), wv, ctx.load(src, xo)), yp, yo)
                if ctx.has_epilogue:
                    with ctx.loop(OH, name="oy") as oy:
                        with ctx.loop(OW, name="ox") as ox:
                            yo = ctx.add(plane, ctx.mul(oy, OW), ox)
                            v = ctx.epilogue(ctx.load(yp, yo), coords(bn, co, oy, ox))
                            ctx.store(v, yp, yo)


# -- Conv on the tiled kernels (microkernels.py) ------------------------------------------------

def tiled_kernels() -> bool:
    """EDGERT_SENSOR_KERNELS=scalar forces the plain-loop twins (for comparing the two)."""
    import os
    return os.environ.get("EDGERT_SENSOR_KERNELS", "tiled") != "scalar"


def _conv_plan(g: dict[str, Any]) -> str:
    """depthwise (channels-last, vectors over channels), gemm_p (vectors over output pixels),
    gemm_c (vectors over output channels, then a transposing store), or loops."""
    if not tiled_kernels():
        return "loops"
    C, CO, G = g["C"], g["CO"], g["group"]
    P = g["OH"] * g["OW"]
    if G == C and g["Cg"] == 1 and CO == C:
        return "depthwise"
    if g.get("nhwc_in") or g.get("nhwc_out"):
        return "gemm_c"  # choose_layouts only marks a pointwise (or any group-1) conv here
    if G != 1:
        return "gemm_p" if P >= 8 else "loops"
    if P >= 16 and (P >= CO or P % 8 == 0):
        return "gemm_p"
    if CO >= 8:
        return "gemm_c"
    return "gemm_p"


def _pointwise(g: dict[str, Any]) -> bool:
    """A 1x1 conv whose input already is the GEMM operand (no im2col copy)."""
    return (g["KH"], g["KW"], g["sy"], g["sx"]) == (1, 1, 1, 1) and not g["padded"]


def _row_pad(P: int) -> int:
    return (P + 7) // 8 * 8


def _conv_plan_scratch(g: dict[str, Any], plan: str) -> int:
    C, CO = g["C"], g["CO"]
    P = g["OH"] * g["OW"]
    Kc = C * g["KH"] * g["KW"]
    if plan == "depthwise":
        return (g["Hp"] * g["Wp"] * C + P * C) * 4 + 128
    if plan == "gemm_p":
        if _pointwise(g) and g["group"] == 1:
            return 0
        if _implicit_rows(g):
            return _pad_elems(g) * 4 + 64
        return g["Cg"] * g["KH"] * g["KW"] * _row_pad(P) * 4 + 64
    im2col = 0 if _pointwise(g) or g.get("nhwc_in") else _pad_elems(g) + 16
    transposed_out = 0 if g.get("nhwc_out") else P * CO
    return (im2col + transposed_out) * 4 + 128


def _implicit_rows(g: dict[str, Any]) -> bool:
    """A one-row output at stride 1 (the 1-D convs): row k of the [K, pixels] im2col matrix is a
    contiguous window of the padded input, so the GEMM reads it in place through a row table."""
    return g["OH"] == 1 and g["sx"] == 1 and not _pointwise(g)


def _plane(g: dict[str, Any]) -> int:
    return g["Hp"] * g["Wp"] if g["padded"] else g["H"] * g["W"]


def _padded_source(ctx: KernelCtx, g: dict[str, Any], xp: Any, x_base: Any, bn: Any,
                   sp: Any) -> tuple[Any, Any]:
    """The input the implicit im2col reads: a zero-padded copy in scratch, or x itself."""
    if g["padded"]:
        _pad_copy(ctx, xp, bn, g, sp)
        return sp, ctx.ci(0)
    return xp, x_base


def _implicit_row_table(ctx: KernelCtx, g: dict[str, Any], n_ch: int) -> Any:
    """rows[k] for k = (ci, ky, kx) over n_ch channels (the weights' K order): the offset of
    output pixel 0's tap k in the (padded) input; pixel p's is rows[k] + p."""
    Wp = g["Wp"] if g["padded"] else g["W"]
    rows = np.array([ci * _plane(g) + ky * g["dy"] * Wp + kx * g["dx"] for ci in range(n_ch)
                     for ky in range(g["KH"]) for kx in range(g["KW"])], np.int64)
    return ctx.array_ptr(rows, "im2col_krows")


def _pad_elems(g: dict[str, Any]) -> int:
    """Floats of the padded NCHW input copy an implicit-im2col GEMM reads (0 when unpadded)."""
    return g["C"] * g["Hp"] * g["Wp"] if g["padded"] else 0


def _implicit_im2col_tables(ctx: KernelCtx, g: dict[str, Any]) -> tuple[Any, Any]:
    """Offsets into the (padded) NCHW input: rows[p] of output pixel p's window corner, ks[k] of
    tap k = (ci, ky, kx) relative to it (the weights' K order), so A(p, k) = x[rows[p] + ks[k]]."""
    Hp, Wp = (g["Hp"], g["Wp"]) if g["padded"] else (g["H"], g["W"])
    rows = np.array([oy * g["sy"] * Wp + ox * g["sx"] for oy in range(g["OH"])
                     for ox in range(g["OW"])], np.int64)
    ks = np.array([ci * Hp * Wp + ky * g["dy"] * Wp + kx * g["dx"] for ci in range(g["C"])
                   for ky in range(g["KH"]) for kx in range(g["KW"])], np.int64)
    return ctx.array_ptr(rows, "im2col_rows"), ctx.array_ptr(ks, "im2col_ks")


def _im2col(ctx: KernelCtx, g: dict[str, Any], xp: Any, x_base: Any, dst: Any,
            transposed: bool, ldp: int = 0, c0: Any = None, n_ch: int = 0) -> None:
    """col[k, p] (or colT[p, k]) = x[c0 + ci, oy*sy + ky*dy - pt, ox*sx + kx*dx - pl], 0 outside,
    for the n_ch channels from c0 (default: all)."""
    b = ctx.b
    C, H, W, OH, OW = g["C"], g["H"], g["W"], g["OH"], g["OW"]
    KH, KW = g["KH"], g["KW"]
    n_ch = n_ch or C
    c0 = c0 if c0 is not None else ctx.ci(0)
    P, Kc = OH * OW, n_ch * KH * KW
    ldp = ldp or P
    if not transposed:
        # Geometry is static: the valid output rows (columns) of each kernel row (column) form
        # one range, looked up from a table; zero everything once, copy only the valid ranges.
        def ranges(O: int, I: int, K: int, s_: int, d: int, p0: int) -> np.ndarray:
            out = []
            for k in range(K):
                v = [o for o in range(O) if 0 <= o * s_ + k * d - p0 < I]
                out += [v[0], v[-1] + 1] if v else [0, 0]
            return np.array(out, np.int64)
        ty = ctx.array_ptr(ranges(OH, H, KH, g["sy"], g["dy"], g["pt"]), "im2col_y")
        tx = ctx.array_ptr(ranges(OW, W, KW, g["sx"], g["dx"], g["pl"]), "im2col_x")
        ctx.memset0(dst, Kc * ldp * 4)
        with ctx.loop(n_ch, name="ci") as ci, ctx.loop(KH, name="ky") as ky:
            ylo = ctx.load(ty, ctx.mul(ky, 2), ctx.i64)
            yhi = ctx.load(ty, ctx.add(ctx.mul(ky, 2), 1), ctx.i64)
            with ctx.loop(KW, name="kx") as kx:
                xlo = ctx.load(tx, ctx.mul(kx, 2), ctx.i64)
                xhi = ctx.load(tx, ctx.add(ctx.mul(kx, 2), 1), ctx.i64)
                k = ctx.add(ctx.mul(ci, KH * KW), ctx.mul(ky, KW), kx)
                ch = ctx.add(x_base, ctx.mul(ctx.add(c0, ci), H * W),
                             b.sub(ctx.mul(kx, g["dx"]), ctx.ci(g["pl"])))
                with ctx.loop(yhi, start=ylo, name="oy") as oy:
                    iy = b.sub(ctx.add(ctx.mul(oy, g["sy"]), ctx.mul(ky, g["dy"])), ctx.ci(g["pt"]))
                    src_row = ctx.add(ch, ctx.mul(iy, W))
                    dst_row = ctx.add(ctx.mul(k, ldp), ctx.mul(oy, OW))
                    with ctx.loop(xhi, start=xlo, name="ox") as ox:
                        v = ctx.load(xp, ctx.add(src_row, ctx.mul(ox, g["sx"])))
                        ctx.store(v, dst, ctx.add(dst_row, ox))
        return
    with ctx.loop(n_ch, name="ci") as ci, ctx.loop(KH, name="ky") as ky, \
            ctx.loop(KW, name="kx") as kx:
        k = ctx.add(ctx.mul(ci, KH * KW), ctx.mul(ky, KW), kx)
        with ctx.loop(OH, name="oy") as oy:
            iy = b.sub(ctx.add(ctx.mul(oy, g["sy"]), ctx.mul(ky, g["dy"])), ctx.ci(g["pt"]))
            y_ok = b.and_(b.icmp_signed(">=", iy, ctx.ci(0)), b.icmp_signed("<", iy, ctx.ci(H)))
            with ctx.loop(OW, name="ox") as ox:
                ix = b.sub(ctx.add(ctx.mul(ox, g["sx"]), ctx.mul(kx, g["dx"])), ctx.ci(g["pl"]))
                ok = b.and_(y_ok, b.and_(b.icmp_signed(">=", ix, ctx.ci(0)),
                                         b.icmp_signed("<", ix, ctx.ci(W))))
                src = ctx.add(x_base, ctx.mul(ctx.add(c0, ci), H * W), ctx.mul(iy, W), ix)
                v = ctx.load(xp, b.select(ok, src, x_base))
                v = b.select(ok, v, ctx.cf(0.0))
                p = ctx.add(ctx.mul(oy, OW), ox)
                d = ctx.add(ctx.mul(p, Kc), k) if transposed else ctx.add(ctx.mul(k, ldp), p)
                ctx.store(v, dst, d)


def _epilogue_pass(ctx: KernelCtx, yp: Any, shape: Sequence[int], base_coords: Sequence[Any] = (),
                   base: Any = None) -> None:
    """Apply the fused epilogue in place over a contiguous output block (still in L1)."""
    if not ctx.has_epilogue:
        return
    shape = list(shape)
    st = _contig_strides(shape)
    lead = list(base_coords)
    # Trailing dims no epilogue operand varies along (a per-channel scale, a scalar, none) run as
    # one flat loop with coordinate 0: a 25x5 plane is one loop of 125, not 25 loops of 5.
    out_shape = ctx.shape(ctx.node.outputs[0])
    rank_off = len(out_shape) - len(shape)
    flat_from = len(shape)
    for d in range(len(shape) - 1, -1, -1):
        if any(broadcast_strides(ctx.shape(t), out_shape)[rank_off + d]
               for t in ctx.epilogue_inputs if int(np.prod(ctx.shape(t))) > 1):
            break
        flat_from = d
    inner = int(np.prod(shape[flat_from:])) if flat_from < len(shape) else 1
    zeros = [ctx.ci(0)] * (len(shape) - flat_from)

    def body(coords: list[Any]) -> None:
        base_off = ctx.add(base if base is not None else ctx.ci(0),
                           *[ctx.mul(c, s_) for c, s_ in zip(coords, st)])
        with ctx.loop(inner, name="e") as i:
            off = ctx.add(base_off, i)
            ctx.store(ctx.epilogue(ctx.load(yp, off), lead + coords + zeros), yp, off)
    _nest(ctx, shape[:flat_from], body)


def _pad_nhwc(ctx: KernelCtx, g: dict[str, Any], xp: Any, x_base: Any, xT: Any) -> None:
    """xT[Hp, Wp, C] = the input (NCHW, or channels-last when g["nhwc_in"]) placed at (pt, pl),
    zero around it. Only the border is cleared: the interior is overwritten every call."""
    b = ctx.b
    C, H, W, Hp, Wp, pt, pl = (g[k] for k in ("C", "H", "W", "Hp", "Wp", "pt", "pl"))
    row = Wp * C
    if pt:
        ctx.memset0(xT, pt * row * 4)
    if Hp - pt - H:
        ctx.memset0(ctx.gep(xT, (pt + H) * row), (Hp - pt - H) * row * 4)
    pr = Wp - pl - W
    with ctx.loop(H, name="h") as h:
        r = ctx.mul(ctx.add(h, pt), row)
        if pl:
            ctx.memset0(ctx.gep(xT, r), pl * C * 4)
        if pr:
            ctx.memset0(ctx.gep(xT, ctx.add(r, (pl + W) * C)), pr * C * 4)
        if g["nhwc_in"]:
            ctx.memcpy(ctx.gep(xT, ctx.add(r, pl * C)),
                       ctx.gep(xp, ctx.add(x_base, ctx.mul(h, W * C))), W * C * 4)
        else:
            # NCHW -> channels-last at a graph edge: read each channel's row contiguously
            with ctx.loop(C, name="c") as c, ctx.loop(W, name="w") as ww:
                v = ctx.load(xp, ctx.add(x_base, ctx.mul(c, H * W), ctx.mul(h, W), ww))
                ctx.store(v, xT, ctx.add(r, ctx.mul(ctx.add(ww, pl), C), c))
    del b


def _layout_ok_epilogue(g: Graph, n: Node) -> bool:
    """A fused tail that is the same at every element (ReLU, Clip, a scalar operand) does not
    care how the output is laid out."""
    return all(int(np.prod(g.shapes[t])) == 1 for t in n.attrs.get("epilogue_inputs", []))


def choose_layouts(g: Graph) -> None:
    """Keep the activations between depthwise-separable convs channels-last ([N, H, W, C]).

    A tensor is stored channels-last when its producer is a float 2-D Conv the tiled kernels
    can write that way (depthwise, or any group-1 conv via the [pixels, channels] GEMM), every
    reader is a depthwise Conv, a pointwise (1x1, stride 1, unpadded, group 1) Conv or a
    GlobalAveragePool, and it is no graph output. The layout then changes only at the edges of
    such a chain (the first conv reads NCHW, the pooling reads channels-last), so the per-layer
    transposes of the NCHW path disappear. Marks nodes with `_nhwc_out` / `_nhwc_in`."""
    if not tiled_kernels():
        return
    readers = g.consumers()

    def conv_geom(n: Node) -> Optional[dict[str, Any]]:
        if n.op != "Conv" or n.domain not in ("", "ai.onnx") or len(g.shapes[n.inputs[0]]) != 4:
            return None
        if n.inputs[1] not in g.consts or g.dtypes.get(n.outputs[0], np.float32) != np.float32:
            return None
        try:
            geo = _conv_geometry(_ShapeOnly(g, n), n)  # type: ignore[arg-type]
        except (ModelFormatError, UnsupportedModelError, KeyError):
            return None
        return geo

    def is_depthwise(geo: dict[str, Any]) -> bool:
        return geo["group"] == geo["C"] and geo["Cg"] == 1 and geo["CO"] == geo["C"]

    for n in g.nodes:
        geo = conv_geom(n)
        if geo is None or not _layout_ok_epilogue(g, n) or len(n.outputs) != 1:
            continue
        if not (is_depthwise(geo) or geo["group"] == 1):
            continue
        t = n.outputs[0]
        if t in g.outputs or not readers.get(t):
            continue
        ok = True
        for r in readers[t]:
            if r.op == "GlobalAveragePool" and r.inputs[0] == t and len(g.shapes[t]) == 4:
                continue
            rg = conv_geom(r)
            if rg is None or r.inputs[0] != t or t in r.inputs[1:] or \
                    not (is_depthwise(rg) or (rg["group"] == 1 and _pointwise(rg))):
                ok = False
                break
        if not ok:
            continue
        n.attrs["_nhwc_out"] = 1
        for r in readers[t]:
            r.attrs["_nhwc_in"] = 1


def k_conv(ctx: KernelCtx) -> None:
    from . import microkernels as mk
    n = ctx.node
    x, wt, y = n.inputs[0], n.inputs[1], n.outputs[0]
    bias_t = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    w = ctx.const(wt)
    if w is None:
        raise _unsupported(n, "a Conv whose weights are not constant")
    g = _conv_geometry(ctx, n)
    plan = _conv_plan(g)
    if plan == "loops":
        k_conv_loops(ctx)
        return
    bias = ctx.const(bias_t) if bias_t else None
    if bias_t and bias is None:
        raise _unsupported(n, "a Conv whose bias is not constant")
    N, C, CO, OH, OW = g["N"], g["C"], g["CO"], g["OH"], g["OW"]
    H, W, Hp, Wp, KH, KW = g["H"], g["W"], g["Hp"], g["Wp"], g["KH"], g["KW"]
    P, Kc = OH * OW, C * KH * KW
    w = w.astype(np.float32).reshape(CO, g["Cg"] * KH * KW)
    bias_arr = np.zeros(CO, np.float32) if bias is None else bias.astype(np.float32).reshape(CO)
    bias_p = ctx.array_ptr(bias_arr, "conv_bias")
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    sp = ctx.scratch_ptr
    b = ctx.b
    spatial = [OW] if g["nsp"] == 1 else [OH, OW]
    # a Relu / Clip tail goes into the GEMMs' stores (none for the depthwise kernel)
    epi = uniform_epilogue(ctx) if plan != "depthwise" else None
    with ctx.loop(N, name="b") as bn:
        x_base, y_base = ctx.mul(bn, C * H * W), ctx.mul(bn, CO * P)
        if plan == "depthwise":
            xT = sp
            outT = ctx.gep(yp, y_base) if g["nhwc_out"] else ctx.gep(sp, Hp * Wp * C + 16)
            _pad_nhwc(ctx, g, xp, x_base, xT)
            wT = ctx.array_ptr(np.ascontiguousarray(w.T), "dw_w")
            mk.depthwise_nhwc(ctx, g, xT, wT, bias_p, outT)
            if not g["nhwc_out"]:
                with ctx.loop(C, name="c") as c, ctx.loop(P, name="p") as p:
                    ctx.store(ctx.load(outT, ctx.add(ctx.mul(p, C), c)), yp,
                              ctx.add(y_base, ctx.mul(c, P), p))
        elif plan == "gemm_p" and g["group"] > 1:
            # one GEMM per group over that group's channels
            Cg, COg = g["Cg"], CO // g["group"]
            Kg = Cg * KH * KW
            wp = ctx.array_ptr(np.ascontiguousarray(w), "conv_w")
            ldb = _row_pad(P)
            rows = None
            if _implicit_rows(g):
                src, src_base = _padded_source(ctx, g, xp, x_base, bn, sp)
                rows = _implicit_row_table(ctx, g, Cg)
            with ctx.loop(g["group"], name="grp") as gi:
                if rows is None:
                    _im2col(ctx, g, xp, x_base, sp, transposed=False, ldp=ldb,
                            c0=ctx.mul(gi, Cg), n_ch=Cg)
                    col, col_base = sp, ctx.ci(0)
                else:
                    col, col_base = src, ctx.add(src_base, ctx.mul(gi, Cg * _plane(g)))
                mk.gemm(ctx, COg, P, Kg, wp, ctx.mul(gi, COg * Kg), Kg, col, col_base, ldb, yp,
                        ctx.add(y_base, ctx.mul(gi, COg * P)), P,
                        row_bias=ctx.gep(bias_p, ctx.mul(gi, COg)), b_rows=rows,
                        epilogue=epi)
        elif plan == "gemm_p":
            wp = ctx.array_ptr(np.ascontiguousarray(w), "conv_w")
            rows = None
            if _pointwise(g):
                col, col_base, ldb = xp, x_base, P
            elif _implicit_rows(g):
                col, col_base = _padded_source(ctx, g, xp, x_base, bn, sp)
                ldb, rows = 0, _implicit_row_table(ctx, g, C)
            else:
                col, col_base, ldb = sp, ctx.ci(0), _row_pad(P)
                _im2col(ctx, g, xp, x_base, col, transposed=False, ldp=ldb)
            mk.gemm(ctx, CO, P, Kc, wp, ctx.ci(0), Kc, col, col_base, ldb, yp, y_base, P,
                    row_bias=bias_p, b_rows=rows, epilogue=epi)
        else:  # gemm_c
            wTp = ctx.array_ptr(np.ascontiguousarray(w.T), "conv_wt")
            if g["nhwc_in"]:  # pointwise over a channels-last input: X[P, C] is A as it is
                a, a_base, lda, acs = xp, x_base, C, 1
                tbuf = sp
            elif _pointwise(g):
                a, a_base, lda, acs = xp, x_base, 1, P
                tbuf = sp
            tables = None
            if not (g["nhwc_in"] or _pointwise(g)):
                # implicit im2col: A(p, k) read from the (padded) input through two offset tables
                if g["padded"]:
                    _pad_copy(ctx, xp, bn, g, sp)
                    a, a_base = sp, ctx.ci(0)
                else:
                    a, a_base = xp, x_base
                lda, acs = 0, 0
                tables = _implicit_im2col_tables(ctx, g)
                tbuf = ctx.gep(sp, _pad_elems(g) + 16)
            out, out_base = (yp, y_base) if g["nhwc_out"] else (tbuf, ctx.ci(0))
            # a channels-last output: the GEMM writes it in place
            mk.gemm(ctx, P, CO, Kc, a, a_base, lda, wTp, ctx.ci(0), CO, out, out_base, CO,
                    col_bias=bias_p, a_col_stride=acs, a_tables=tables, epilogue=epi)
            if not g["nhwc_out"]:
                with ctx.loop(CO, name="co") as co, ctx.loop(P, name="p") as p:
                    ctx.store(ctx.load(tbuf, ctx.add(ctx.mul(p, CO), co)), yp,
                              ctx.add(y_base, ctx.mul(co, P), p))
        if epi is None:
            _epilogue_pass(ctx, yp, [CO] + spatial, [bn], y_base)


def _pool_geometry(ctx: Any, n: Node) -> dict[str, Any]:
    ks = list(n.attrs.get("kernel_shape", []))
    if not ks:
        raise ModelFormatError(f"{n.where()}: kernel_shape is required")
    dil = n.attrs.get("dilations", [1] * len(ks)) if n.op == "MaxPool" else [1] * len(ks)
    g = _spatial(ctx, n, n.inputs[0], ks, n.outputs[0], dil)
    return g


def k_pool(ctx: KernelCtx) -> None:
    n = ctx.node
    if len([t for t in n.outputs if t]) > 1:
        raise _unsupported(n, "MaxPool's Indices output")
    if n.attrs.get("storage_order", 0):
        raise _unsupported(n, "storage_order=1")
    g = _pool_geometry(ctx, n)
    is_max = n.op == "MaxPool"
    incl = bool(n.attrs.get("count_include_pad", 0))
    b = ctx.b
    xp, yp = ctx.ptr(n.inputs[0]), ctx.ptr(n.outputs[0])
    H, W, OH, OW, KH, KW = g["H"], g["W"], g["OH"], g["OW"], g["KH"], g["KW"]
    sy, sx, dy, dx, pt, pl, pb, pr = (g[k] for k in ("sy", "sx", "dy", "dx", "pt", "pl", "pb",
                                                      "pr"))
    NC = g["N"] * g["C"]
    # Geometry is static: the valid kernel window of each output row/column is a table.
    def ranges(O: int, I: int, K: int, s: int, d: int, p0: int, p1: int) -> list[tuple]:
        out = []
        for o in range(O):
            start = o * s - p0
            ks = [k for k in range(K) if 0 <= start + k * d < I]
            lo, hi = (ks[0], ks[-1] + 1) if ks else (0, 0)
            full = min(start + (K - 1) * d + 1, I + p1) - start  # ORT's count_include_pad size
            out.append((start, lo, hi, max(full, 0)))
        return out

    ry = ranges(OH, H, KH, sy, dy, pt, pb)
    rx = ranges(OW, W, KW, sx, dx, pl, pr)
    if all((lo, hi) == (0, K) for (_, lo, hi, _), K in
           [(r, KH) for r in ry] + [(r, KW) for r in rx]) and (pt, pl) == (0, 0) \
            and KH * KW <= 16:
        _pool_dense(ctx, g, is_max)
        return
    tab = np.array([[r[0], r[1], r[2], r[3]] for r in ry], np.int64).reshape(-1)
    tabx = np.array([[r[0], r[1], r[2], r[3]] for r in rx], np.int64).reshape(-1)
    typ = ctx.array_ptr(tab, "pool_ry")
    txp = ctx.array_ptr(tabx, "pool_rx")
    i64 = ctx.i64
    init = ctx.cf(-3.4028234663852886e38) if is_max else ctx.cf(0.0)
    acc_ptr = ctx.alloca()
    with ctx.loop(NC, name="nc") as nc:
        with ctx.loop(OH, name="oy") as oy:
            ys, ylo, yhi, yfull = (ctx.load(typ, ctx.add(ctx.mul(oy, 4), j), i64) for j in range(4))
            with ctx.loop(OW, name="ox") as ox:
                xs, xlo, xhi, xfull = (ctx.load(txp, ctx.add(ctx.mul(ox, 4), j), i64)
                                       for j in range(4))
                b.store(init, acc_ptr)
                with ctx.loop(yhi, start=ylo, name="ky") as ky:
                    iy = b.add(ys, ctx.mul(ky, dy))
                    with ctx.loop(xhi, start=xlo, name="kx") as kx:
                        ix = b.add(xs, ctx.mul(kx, dx))
                        v = ctx.load(xp, ctx.add(ctx.mul(nc, H * W), ctx.mul(iy, W), ix))
                        acc = b.load(acc_ptr, typ=ctx.f32)
                        if is_max:
                            # NaN propagates (a window holding a NaN gives NaN; onnxruntime's
                            # MaxPool has no single NaN rule, see tests/test_sensor_ops.py)
                            keep = b.or_(b.fcmp_ordered(">", acc, v),
                                         b.fcmp_unordered("uno", acc, acc))
                            acc = b.select(keep, acc, v)
                        else:
                            acc = b.fadd(acc, v)
                        b.store(acc, acc_ptr)
                acc = b.load(acc_ptr, typ=ctx.f32)
                if not is_max:
                    if incl:
                        cnt = b.mul(yfull, xfull) if g["nsp"] == 2 else xfull
                    else:
                        cnt = b.mul(b.sub(yhi, ylo), b.sub(xhi, xlo))
                    acc = b.fdiv(acc, b.sitofp(cnt, ctx.f32))
                coords = [ctx.ci(0), nc, ox] if g["nsp"] == 1 else [ctx.ci(0), nc, oy, ox]
                if g["N"] > 1:
                    C = g["C"]
                    coords[0], coords[1] = b.sdiv(nc, ctx.ci(C)), b.srem(nc, ctx.ci(C))
                acc = ctx.epilogue(acc, coords)
                ctx.store(acc, yp, ctx.add(ctx.mul(nc, OH * OW), ctx.mul(oy, OW), ox))


def _pool_dense(ctx: KernelCtx, g: dict[str, Any], is_max: bool) -> None:
    """Every window inside the input (no padding reached): the kernel taps unrolled, the output
    column loop free of branches, so LLVM vectorises it (strided loads for stride 2)."""
    n = ctx.node
    b = ctx.b
    xp, yp = ctx.ptr(n.inputs[0]), ctx.ptr(n.outputs[0])
    H, W, OH, OW, KH, KW = g["H"], g["W"], g["OH"], g["OW"], g["KH"], g["KW"]
    sy, sx, dy, dx = g["sy"], g["sx"], g["dy"], g["dx"]
    C = g["C"]
    with ctx.loop(g["N"] * C, name="nc") as nc, ctx.loop(OH, name="oy") as oy:
        row = ctx.add(ctx.mul(nc, H * W), ctx.mul(oy, sy * W))
        with ctx.loop(OW, name="ox") as ox:
            base = ctx.add(row, ctx.mul(ox, sx))
            acc = None
            for ky in range(KH):
                for kx in range(KW):
                    v = ctx.load(xp, ctx.add(base, ky * dy * W + kx * dx))
                    if acc is None:
                        acc = v
                    elif is_max:  # NaN propagates, as in the general path
                        keep = b.or_(b.fcmp_ordered(">", acc, v), b.fcmp_unordered("uno", acc, acc))
                        acc = b.select(keep, acc, v)
                    else:
                        acc = b.fadd(acc, v)
            if not is_max:
                acc = b.fmul(acc, ctx.cf(1.0 / (KH * KW)))
            coords = [ctx.ci(0), nc, ox] if g["nsp"] == 1 else [ctx.ci(0), nc, oy, ox]
            if g["N"] > 1:
                coords[0], coords[1] = b.sdiv(nc, ctx.ci(C)), b.srem(nc, ctx.ci(C))
            ctx.store(ctx.epilogue(acc, coords), yp,
                      ctx.add(ctx.mul(nc, OH * OW), ctx.mul(oy, OW), ox))


def k_global_pool(ctx: KernelCtx) -> None:
    n = ctx.node
    xs = ctx.shape(n.inputs[0])
    NC = xs[0] * xs[1]
    S = int(np.prod(xs[2:]))
    b = ctx.b
    xp, yp = ctx.ptr(n.inputs[0]), ctx.ptr(n.outputs[0])
    is_max = n.op == "GlobalMaxPool"
    if n.attrs.get("_nhwc_in"):
        _global_avg_pool_nhwc(ctx, xs, xp, yp)
        return
    acc_ptr = ctx.alloca()
    rank = len(xs)
    with ctx.loop(NC, name="nc") as nc:
        b.store(ctx.load(xp, ctx.mul(nc, S)) if is_max else ctx.cf(0.0), acc_ptr)
        with ctx.loop(S, name="s") as s:
            v = ctx.load(xp, ctx.add(ctx.mul(nc, S), s))
            acc = b.load(acc_ptr, typ=ctx.f32)
            if is_max:  # NaN propagates, as in MaxPool
                keep = b.or_(b.fcmp_ordered(">", acc, v), b.fcmp_unordered("uno", acc, acc))
                acc = b.select(keep, acc, v)
            else:
                acc = ctx.fadd(acc, v)
            b.store(acc, acc_ptr)
        acc = b.load(acc_ptr, typ=ctx.f32)
        if not is_max:
            acc = b.fmul(acc, ctx.cf(1.0 / S))
        C = xs[1]
        coords = [b.sdiv(nc, ctx.ci(C)), b.srem(nc, ctx.ci(C))] + [ctx.ci(0)] * (rank - 2)
        ctx.store(ctx.epilogue(acc, coords), yp, nc)


def _global_avg_pool_nhwc(ctx: KernelCtx, xs: Sequence[int], xp: Any, yp: Any) -> None:
    """GlobalAveragePool of a channels-last [N, H, W, C] input: rows of C summed in order (the
    inner loop over channels vectorises), then scaled and passed through the epilogue."""
    b = ctx.b
    N, C = xs[0], xs[1]
    S = int(np.prod(xs[2:]))
    with ctx.loop(N, name="nb") as nb:
        yb = ctx.mul(nb, C)
        with ctx.loop(C, name="c0") as c:
            ctx.store(ctx.cf(0.0), yp, ctx.add(yb, c))
        with ctx.loop(S, name="s") as s_, ctx.loop(C, name="c") as c:
            yo = ctx.add(yb, c)
            v = ctx.load(xp, ctx.add(ctx.mul(nb, S * C), ctx.mul(s_, C), c))
            ctx.store(b.fadd(ctx.load(yp, yo), v), yp, yo)
        with ctx.loop(C, name="ce") as c:
            yo = ctx.add(yb, c)
            acc = b.fmul(ctx.load(yp, yo), ctx.cf(1.0 / S))
            coords = [nb, c] + [ctx.ci(0)] * (len(xs) - 2)
            ctx.store(ctx.epilogue(acc, coords), yp, yo)


# =============================================================================================
# softmax, reductions
# =============================================================================================

def k_softmax(ctx: KernelCtx) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    shp = ctx.shape(x)
    rank = len(shp)
    opset = ctx.cg.g.opset
    axis = n.attrs.get("axis", -1 if opset >= 13 else 1) % max(rank, 1)
    if opset >= 13:
        outer, L, inner = int(np.prod(shp[:axis])), shp[axis], int(np.prod(shp[axis + 1:]))
    else:  # coerced to 2-D: softmax over everything from `axis` on
        outer, L, inner = int(np.prod(shp[:axis])), int(np.prod(shp[axis:])), 1
    log = n.op == "LogSoftmax"
    b = ctx.b
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    mp, sp = ctx.alloca(), ctx.alloca()
    with ctx.loop(outer, name="o") as o:
        with ctx.loop(inner, name="in") as i:
            base = ctx.add(ctx.mul(o, L * inner), i)
            b.store(ctx.cf(-math.inf), mp)
            with ctx.loop(L, name="l") as l:
                v = ctx.load(xp, ctx.add(base, ctx.mul(l, inner)))
                m = b.load(mp, typ=ctx.f32)
                b.store(b.select(b.fcmp_ordered(">", v, m), v, m), mp)
            m = b.load(mp, typ=ctx.f32)
            b.store(ctx.cf(0.0), sp)
            with ctx.loop(L, name="l") as l:
                off = ctx.add(base, ctx.mul(l, inner))
                e = m_exp(ctx, b.fsub(ctx.load(xp, off), m))
                if not log:
                    ctx.store(e, yp, off)
                b.store(ctx.fadd(b.load(sp, typ=ctx.f32), e), sp)
            s = b.load(sp, typ=ctx.f32)
            if log:
                ls = b.call(_intr(ctx, "llvm.log"), [s])
                with ctx.loop(L, name="l") as l:
                    off = ctx.add(base, ctx.mul(l, inner))
                    ctx.store(b.fsub(b.fsub(ctx.load(xp, off), m), ls), yp, off)
            else:
                r = b.fdiv(ctx.cf(1.0), s)
                with ctx.loop(L, name="l") as l:
                    off = ctx.add(base, ctx.mul(l, inner))
                    ctx.store(b.fmul(ctx.load(yp, off), r), yp, off)


def k_reduce(ctx: KernelCtx) -> None:
    n = ctx.node
    x, y = n.inputs[0], n.outputs[0]
    shp = ctx.shape(x)
    rank = len(shp)
    if len(n.inputs) > 1 and n.inputs[1]:
        axes = _const_ints(ctx, n.inputs[1], "reduction axes")
    else:
        axes = n.attrs.get("axes")
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            _strided_copy(ctx, ctx.ptr(x), ctx.ptr(y), shp, _contig_strides(shp))
            return
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    keep = [d for d in range(rank) if d not in axes]
    st = _contig_strides(shp)
    b = ctx.b
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    acc_ptr = ctx.alloca()
    kind = n.op
    count = int(np.prod([shp[a] for a in axes]))

    def outer_body(oc: list[Any]) -> None:
        base = ctx.add(*[ctx.mul(c, st[d]) for c, d in zip(oc, keep)])
        # max/min: ORT's rule, acc starts at the first element and takes x when x > acc
        b.store(ctx.load(xp, base) if kind in ("ReduceMax", "ReduceMin") else ctx.cf(0.0),
                acc_ptr)

        def inner_body(ic: list[Any]) -> None:
            off = ctx.add(base, *[ctx.mul(c, st[d]) for c, d in zip(ic, axes)])
            v = ctx.load(xp, off)
            acc = b.load(acc_ptr, typ=ctx.f32)
            if kind in ("ReduceMax", "ReduceMin"):
                cmp = ">" if kind == "ReduceMax" else "<"
                acc = b.select(b.fcmp_ordered(cmp, v, acc), v, acc)
            elif kind == "ReduceSumSquare":
                acc = ctx.fma(acc, v, v)
            else:
                acc = ctx.fadd(acc, v)
            b.store(acc, acc_ptr)

        _nest(ctx, [shp[a] for a in axes], inner_body)
        acc = b.load(acc_ptr, typ=ctx.f32)
        if kind == "ReduceMean":
            acc = b.fmul(acc, ctx.cf(1.0 / count))
        yo = ctx.add(*[ctx.mul(c, s) for c, s in zip(oc, _contig_strides([shp[d] for d in keep]))])
        ctx.store(acc, yp, yo)

    _nest(ctx, [shp[d] for d in keep], outer_body) if keep else outer_body([])


# =============================================================================================
# recurrent: GRU and LSTM (one direction, batch 1)
# =============================================================================================

def _rnn_check(ctx: KernelCtx, n: Node, gates: int) -> dict[str, Any]:
    xs = ctx.shape(n.inputs[0])
    if n.attrs.get("layout", 0) != 0:
        raise _unsupported(n, "layout=1")
    direction = n.attrs.get("direction", "forward")
    if direction not in ("forward", "reverse"):
        raise _unsupported(n, f"direction={direction!r} (one direction only)")
    if "activations" in n.attrs:
        want = ["Sigmoid", "Tanh"] if gates == 3 else ["Sigmoid", "Tanh", "Tanh"]
        if [a for a in n.attrs["activations"]] != want:
            raise _unsupported(n, f"activations {n.attrs['activations']}")
    if n.attrs.get("clip") is not None:
        raise _unsupported(n, "clip")
    if n.attrs.get("input_forget", 0):
        raise _unsupported(n, "input_forget=1")
    T, B, I = xs
    if B != 1:
        raise _unsupported(n, f"batch {B} (batch 1 only)")
    H = int(n.attrs.get("hidden_size", ctx.shape(n.inputs[2])[-1]))
    W, R = ctx.const(n.inputs[1]), ctx.const(n.inputs[2])
    if W is None or R is None:
        raise _unsupported(n, "non-constant W or R")
    if W.shape != (1, gates * H, I) or R.shape != (1, gates * H, H):
        raise ModelFormatError(f"{n.where()}: W {W.shape} / R {R.shape} do not match hidden "
                               f"size {H} and input size {I}")
    Bt = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
    bias = ctx.const(Bt) if Bt else np.zeros((1, 2 * gates * H), np.float32)
    if bias is None or bias.shape != (1, 2 * gates * H):
        raise _unsupported(n, "a non-constant or misshapen B")
    if len(n.inputs) > 4 and n.inputs[4]:
        sl = ctx.const(n.inputs[4])
        if sl is None or int(sl.reshape(-1)[0]) != T:
            raise _unsupported(n, "sequence_lens other than the full length")
    return dict(T=T, I=I, H=H, W=W[0].astype(np.float32), R=R[0].astype(np.float32),
                B=bias[0].astype(np.float32), reverse=direction == "reverse")


def _rnn_scratch(n: Node, g: Graph, gates: int) -> int:
    T = g.shapes[n.inputs[0]][0]
    H = int(n.attrs.get("hidden_size", g.shapes[n.inputs[2]][-1]))
    return (T * gates * H + gates * H + 4 * H) * 4 + 256


def _dense(ctx: KernelCtx, w: np.ndarray, bias: np.ndarray, M: int, x: Any, x_off: Any,
           out: Any, out_off: Any, hint: str) -> None:
    """out[m, r] = bias[r] + sum_c w[r, c] x[m, c] for m < M (w, bias: constants)."""
    rows, cols = w.shape
    if tiled_kernels():
        from . import microkernels as mk
        wT = ctx.array_ptr(np.ascontiguousarray(w.T, dtype=np.float32), hint + "_t")
        bp = ctx.array_ptr(np.ascontiguousarray(bias, dtype=np.float32), hint + "_b")
        mk.gemm(ctx, M, rows, cols, x, x_off, cols, wT, ctx.ci(0), rows, out, out_off, rows,
                col_bias=bp)
        return
    wp = ctx.array_ptr(np.ascontiguousarray(w, dtype=np.float32), hint)
    bp = ctx.array_ptr(np.ascontiguousarray(bias, dtype=np.float32), hint + "_b")
    with ctx.loop(M, name="dm") as m:
        _matvec(ctx, wp, rows, cols, x, ctx.add(x_off, ctx.mul(m, cols)), out,
                ctx.add(out_off, ctx.mul(m, rows)), bp, 0)


def _matvec(ctx: KernelCtx, wp: Any, rows: int, cols: int, vec: Any, vec_off: Any,
            out: Any, out_off: Any, bias_p: Any, bias_off: int) -> None:
    """out[r] = bias[r] + sum_c W[r, c] vec[c] (dot products, vectorised reductions)."""
    b = ctx.b
    acc_ptr = ctx.alloca()
    with ctx.loop(rows, name="r") as r:
        b.store(ctx.cf(0.0), acc_ptr)
        with ctx.loop(cols, name="c") as c:
            acc = b.load(acc_ptr, typ=ctx.f32)
            b.store(ctx.fma(acc, ctx.load(wp, ctx.add(ctx.mul(r, cols), c)),
                            ctx.load(vec, ctx.add(vec_off, c))), acc_ptr)
        v = b.fadd(b.load(acc_ptr, typ=ctx.f32), ctx.load(bias_p, ctx.add(r, bias_off)))
        ctx.store(v, out, ctx.add(out_off, r))


def _rnn_common(ctx: KernelCtx, gates: int, half: int = 0
                ) -> tuple[dict[str, Any], Any, Any, Any, Any, Any]:
    """half: the first `half` gates' rows of W, R and both biases are scaled by 0.5 (exact) for a
    step that takes sigmoid(x) as 0.5 + 0.5 tanh(x / 2) on the pre-halved sums."""
    n = ctx.node
    p = _rnn_check(ctx, n, gates)
    T, I, H = p["T"], p["I"], p["H"]
    if half:
        for k, rows in (("W", [slice(0, half * H)]), ("R", [slice(0, half * H)]),
                        ("B", [slice(0, half * H), slice(gates * H, (gates + half) * H)])):
            p[k] = p[k].copy()
            for sl in rows:
                p[k][sl] *= np.float32(0.5)
    s = ctx.scratch_ptr
    xw = s                                           # [T, gates*H]  X W^T + Wb
    rh = ctx.gep(s, T * gates * H)                   # [gates*H]     R h + Rb
    h = ctx.gep(s, T * gates * H + gates * H)        # [H]
    c = ctx.gep(s, T * gates * H + gates * H + H)    # [H] (LSTM)
    tmp = ctx.gep(s, T * gates * H + gates * H + 2 * H)  # [H]
    xp = ctx.ptr(n.inputs[0])
    _dense(ctx, p["W"], p["B"][:gates * H], T, xp, ctx.ci(0), xw, ctx.ci(0), "rnn_w")
    init = n.inputs[5] if len(n.inputs) > 5 and n.inputs[5] else None
    if init:
        if ctx.shape(init) != (1, 1, H):
            raise ModelFormatError(f"{n.where()}: initial_h shape {ctx.shape(init)}")
        ctx.memcpy(h, ctx.ptr(init), 4 * H)
    else:
        ctx.memset0(h, 4 * H)
    if gates == 4:
        init_c = n.inputs[6] if len(n.inputs) > 6 and n.inputs[6] else None
        if init_c:
            ctx.memcpy(c, ctx.ptr(init_c), 4 * H)
        else:
            ctx.memset0(c, 4 * H)
    return p, xw, rh, h, c, tmp


def _rnn_outputs(ctx: KernelCtx, t_idx: Any, h: Any, H: int) -> None:
    n = ctx.node
    if n.outputs and n.outputs[0]:
        ctx.memcpy(ctx.gep(ctx.ptr(n.outputs[0]), ctx.mul(t_idx, H)), h, 4 * H)


GateBody = Callable[[Callable[[Any, Any], Any], Callable[[float], Any], Any],
                   list[tuple[Any, Any, Any]]]


def _over_hidden(ctx: KernelCtx, H: int, body: GateBody) -> None:  # noqa: N803
    """Run an elementwise gate body over the H hidden units: written out over vectors (16 or 8
    floats, the last one overlapping and ending at H) when H fills one, a scalar loop below that.
    body(load, const, j) reads with load(ptr, offset of unit j), makes constants with const(v),
    and returns the stores (value, ptr, offset): they are issued after every vector's loads, so
    a body may update its inputs in place (the LSTM's c) even where vectors overlap."""
    if H < 8:
        with ctx.loop(H, name="j") as j:
            for v, ptr, off in body(ctx.load, ctx.cf, j):
                ctx.store(v, ptr, off)
        return
    from .microkernels import Vec
    widest = int(getattr(ctx.cg, "vector_width", 8))
    vw = widest if H >= widest else 8
    vec = Vec(ctx, vw)
    ir = ctx.ir

    def const(v: float) -> Any:
        return ir.Constant(vec.ty, [float(v)] * vw)
    starts = list(range(0, H // vw * vw, vw)) + ([H - vw] if H % vw else [])
    pending: list[tuple[Any, Any, Any]] = []
    for j0 in starts:
        pending += body(vec.load, const, ctx.ci(j0))
    for v, ptr, off in pending:
        vec.store(v, ptr, off)


def _rnn_regs_ok(H: int) -> bool:  # noqa: N803
    return tiled_kernels() and H >= 8


def _rnn_regs(ctx: KernelCtx, R: np.ndarray, rb: np.ndarray, H: int, gates: int,  # noqa: N803
              hint: str) -> Optional[dict[str, Any]]:
    """The register-resident recurrent step's constants (tiled kernels, H >= 8): R^T and the
    recurrent bias as arrays, and the vector layout: the gate math's vectors of hidden units
    (starts, as _over_hidden) and, for each gate g, the matching columns g*H + start of R h, so
    the matrix-vector product hands each gate exactly the vectors it reads, in registers."""
    if not _rnn_regs_ok(H):
        return None
    from . import microkernels as mk
    # the widest vectors only where they tile H exactly: R h costs gates x vectors x H FMAs a
    # step, so 8-float vectors that fit (H = 24: 3 per gate) beat 16-float ones that overlap
    widest = int(getattr(ctx.cg, "vector_width", 8))
    vw = widest if H % widest == 0 else 8
    starts = list(range(0, H // vw * vw, vw)) + ([H - vw] if H % vw else [])
    return dict(vec=mk.Vec(ctx, vw), vw=vw, starts=starts, H=H, gates=gates,
                rt=ctx.array_ptr(np.ascontiguousarray(R.T, dtype=np.float32), hint + "_t"),
                rb=ctx.array_ptr(np.ascontiguousarray(rb, dtype=np.float32), hint + "_b"),
                cols=[g * H + j0 for g in range(gates) for j0 in starts])


def _rnn_rh(ctx: KernelCtx, regs: dict[str, Any], h: Any) -> list[list[Any]]:
    """R h + Rb for one step, in registers: [gate][vector of hidden units]."""
    from . import microkernels as mk
    H, ns = regs["H"], len(regs["starts"])
    v = mk.matvec_regs(ctx, regs["cols"], H, regs["vec"], h, ctx.ci(0), regs["rt"],
                       regs["gates"] * H, regs["rb"])
    return [v[g * ns:(g + 1) * ns] for g in range(regs["gates"])]


def _gru_lbr_step(ctx: KernelCtx, regs: dict[str, Any], xw: Any, xo: Any, h: Any,
                  update: Callable[..., list[tuple[Any, Any, Any]]]) -> None:
    """One linear_before_reset GRU step with R h in registers; the z and r rows of W, R and the
    biases come pre-halved (_rnn_common(half=2)), so their sums s are already x / 2 and
    sigmoid(x) = 0.5 + 0.5 tanh(s). The step's critical path is R h -> r -> hh -> h, so r's
    product is refactored off it: r (R_h h + Rb_h) + xw_h = a + t b with a = xw_h + b,
    b = 0.5 (R_h h + Rb_h) and t = tanh(s_r), leaving one FMA between the two tanh evaluations.
    The stores (h, Y[t]) are issued after every vector's reads."""
    b, vec, H, vw = ctx.b, regs["vec"], regs["H"], regs["vw"]
    ir = ctx.ir

    def const(v: float) -> Any:
        return ir.Constant(vec.ty, [float(v)] * vw)

    def fma(x: Any, y: Any, z: Any) -> Any:
        return b.fadd(b.fmul(x, y, flags=("contract",)), z, flags=("contract",))
    rz, rr, rn = _rnn_rh(ctx, regs, h)
    pending: list[tuple[Any, Any, Any]] = []
    hhs = []
    for i, j0 in enumerate(regs["starts"]):  # r and hh first: their divisions are on the path
        j = ctx.ci(j0)
        tr = m_tanh_gate(ctx, b.fadd(vec.load(xw, ctx.add(xo, H, j)), rr[i]), const)
        bn = b.fmul(rn[i], const(0.5))
        an = b.fadd(vec.load(xw, ctx.add(xo, 2 * H, j)), bn)
        hhs.append(m_tanh_gate(ctx, fma(tr, bn, an), const))
    for i, j0 in enumerate(regs["starts"]):
        j = ctx.ci(j0)
        z = fma(m_tanh_gate(ctx, b.fadd(vec.load(xw, ctx.add(xo, j)), rz[i]), const),
                const(0.5), const(0.5))
        pending += update(vec.load, const, j, hhs[i], z)
    for v, ptr, off in pending:
        vec.store(v, ptr, off)


def k_gru(ctx: KernelCtx) -> None:
    n = ctx.node
    lbr = int(n.attrs.get("linear_before_reset", 0))
    H = int(n.attrs.get("hidden_size", ctx.shape(n.inputs[2])[-1]))
    p, xw, rh, h, _, tmp = _rnn_common(ctx, 3, half=2 if lbr and _rnn_regs_ok(H) else 0)
    T, H = p["T"], p["H"]
    b = ctx.b
    R, Bv = p["R"], p["B"]
    y_all = ctx.ptr(n.outputs[0]) if n.outputs and n.outputs[0] else None
    regs = _rnn_regs(ctx, R, Bv[3 * H:], H, 3, "gru_r") if lbr else None
    with ctx.loop(T, name="step") as step:
        t = b.sub(ctx.ci(T - 1), step) if p["reverse"] else step
        xo = ctx.mul(t, 3 * H)
        yo = ctx.mul(t, H)

        def update(ld: Any, c: Any, j: Any, hh: Any, z: Any) -> list[tuple[Any, Any, Any]]:
            # h' = (1 - z) hh + z h, written to h and to Y[t]
            hn = b.fadd(b.fmul(b.fsub(c(1.0), z), hh), b.fmul(z, ld(h, j)))
            out = [(hn, h, j)]
            if y_all is not None:
                out.append((hn, y_all, ctx.add(yo, j)))
            return out

        if lbr and regs is not None:
            _gru_lbr_step(ctx, regs, xw, xo, h, update)
        elif lbr:
            _dense(ctx, R, Bv[3 * H:], 1, h, ctx.ci(0), rh, ctx.ci(0), "gru_r")

            def gates(ld: Any, c: Any, j: Any) -> list[tuple[Any, Any, Any]]:
                z = m_sigmoid_gate(ctx, b.fadd(ld(xw, ctx.add(xo, j)), ld(rh, j)), c)
                r = m_sigmoid_gate(ctx, b.fadd(ld(xw, ctx.add(xo, H, j)), ld(rh, ctx.add(j, H))),
                                   c)
                hh = m_tanh_gate(ctx, b.fadd(ld(xw, ctx.add(xo, 2 * H, j)),
                                             b.fmul(r, ld(rh, ctx.add(j, 2 * H)))), c)
                return update(ld, c, j, hh, z)
            _over_hidden(ctx, H, gates)
        else:
            # z and r first, then R_h (r * h)
            _dense(ctx, R[:2 * H], Bv[3 * H:5 * H], 1, h, ctx.ci(0), rh, ctx.ci(0), "gru_rzr")

            def reset(ld: Any, c: Any, j: Any) -> list[tuple[Any, Any, Any]]:
                r = m_sigmoid_gate(ctx, b.fadd(ld(xw, ctx.add(xo, H, j)), ld(rh, ctx.add(j, H))),
                                   c)
                return [(b.fmul(r, ld(h, j)), tmp, j)]
            _over_hidden(ctx, H, reset)
            _dense(ctx, R[2 * H:], Bv[5 * H:], 1, tmp, ctx.ci(0), rh, ctx.ci(2 * H), "gru_rh")

            def gates0(ld: Any, c: Any, j: Any) -> list[tuple[Any, Any, Any]]:
                z = m_sigmoid_gate(ctx, b.fadd(ld(xw, ctx.add(xo, j)), ld(rh, j)), c)
                hh = m_tanh_gate(ctx, b.fadd(ld(xw, ctx.add(xo, 2 * H, j)),
                                             ld(rh, ctx.add(j, 2 * H))), c)
                return update(ld, c, j, hh, z)
            _over_hidden(ctx, H, gates0)
    if len(n.outputs) > 1 and n.outputs[1]:
        ctx.memcpy(ctx.ptr(n.outputs[1]), h, 4 * H)


def k_lstm(ctx: KernelCtx) -> None:
    n = ctx.node
    p, xw, rh, h, c, tmp = _rnn_common(ctx, 4)
    T, H = p["T"], p["H"]
    b = ctx.b
    peep = n.inputs[7] if len(n.inputs) > 7 and n.inputs[7] else None
    pp = None
    if peep:
        pv = ctx.const(peep)
        if pv is None or pv.shape != (1, 3 * H):
            raise _unsupported(n, "non-constant or misshapen peepholes P")
        pp = ctx.array_ptr(pv[0].astype(np.float32), "lstm_p")
    with ctx.loop(T, name="step") as step:
        t = b.sub(ctx.ci(T - 1), step) if p["reverse"] else step
        xo = ctx.mul(t, 4 * H)
        _dense(ctx, p["R"], p["B"][4 * H:], 1, h, ctx.ci(0), rh, ctx.ci(0), "lstm_r")

        def cell(ld: Any, k: Any, j: Any) -> list[tuple[Any, Any, Any]]:
            def pre(g: int) -> Any:
                return b.fadd(ld(xw, ctx.add(xo, g * H, j)), ld(rh, ctx.add(j, g * H)))
            cv = ld(c, j)
            gi, go, gf, gc = pre(0), pre(1), pre(2), pre(3)   # ONNX gate order: i, o, f, c
            if pp is not None:
                gi = b.fadd(gi, b.fmul(ld(pp, j), cv))
                gf = b.fadd(gf, b.fmul(ld(pp, ctx.add(j, 2 * H)), cv))
            i_ = m_sigmoid_gate(ctx, gi, k)
            f_ = m_sigmoid_gate(ctx, gf, k)
            cn = b.fadd(b.fmul(f_, cv), b.fmul(i_, m_tanh_gate(ctx, gc, k)))
            if pp is not None:
                go = b.fadd(go, b.fmul(ld(pp, ctx.add(j, H)), cn))
            o_ = m_sigmoid_gate(ctx, go, k)
            return [(cn, c, j), (b.fmul(o_, m_tanh_gate(ctx, cn, k)), h, j)]
        _over_hidden(ctx, H, cell)
        _rnn_outputs(ctx, t, h, H)
    if len(n.outputs) > 1 and n.outputs[1]:
        ctx.memcpy(ctx.ptr(n.outputs[1]), h, 4 * H)
    if len(n.outputs) > 2 and n.outputs[2]:
        ctx.memcpy(ctx.ptr(n.outputs[2]), c, 4 * H)


# =============================================================================================
# registry
# =============================================================================================

KERNELS: dict[str, Kernel] = {
    "Elementwise": k_elementwise,
    "Gemm": k_gemm,
    "MatMul": k_matmul,
    "Conv": k_conv,
    "MaxPool": k_pool,
    "AveragePool": k_pool,
    "GlobalAveragePool": k_global_pool,
    "GlobalMaxPool": k_global_pool,
    "Softmax": k_softmax,
    "LogSoftmax": k_softmax,
    "Transpose": k_transpose,
    "Concat": k_concat,
    "Slice": k_slice,
    "Split": k_split,
    "Gather": k_gather,
    "ReduceMean": k_reduce,
    "ReduceSum": k_reduce,
    "ReduceMax": k_reduce,
    "ReduceMin": k_reduce,
    "ReduceSumSquare": k_reduce,
    "GRU": k_gru,
    "LSTM": k_lstm,
}

SCRATCH: dict[str, Callable[[Node, Graph], int]] = {
    "Conv": _conv_scratch,
    "GRU": lambda n, g: _rnn_scratch(n, g, 3),
    "LSTM": lambda n, g: _rnn_scratch(n, g, 4),
}


def kernel_for(n: Node) -> Optional[Kernel]:
    from . import quant
    if n.domain not in ("", "ai.onnx"):
        return quant.KERNELS.get((n.domain, n.op))
    return KERNELS.get(n.op) or quant.KERNELS.get(("", n.op))


def scratch_bytes_for(g: Graph) -> Callable[[Node], int]:
    from . import quant

    def size(n: Node) -> int:
        f = SCRATCH.get(n.op) or quant.SCRATCH.get(n.op)
        return f(n, g) if f else 0
    return size
