"""Register-tiled int8 kernels for QLinearConv, QLinearMatMul and QGemm (the dtype="int8" path),
the integer twins of microkernels.py. Exact: every product and sum is an integer in int32
(wrapping as the scalar loops in quant.py wrap), and requantization gives the scalar path's
values (float(acc) * multiplier, round half to even, + zero point, clamp), so the outputs are
equal bit for bit to the scalar twin (EDGERT_SENSOR_KERNELS=scalar) and to onnxruntime's MLAS.

  qgemm       Y[m, n] = requant(bias'[n] + sum_k A[m, k] B[k, n]): rows m are output pixels (or
              a MatMul's rows), A an unsigned 8-bit im2col matrix [M, Kp] built per call (int8
              activations are moved to uint8 by flipping the sign bit, x + 128, padding holds
              the zero point), B the constant weights (w - w_zp) re-laid out at compile time.
              The zero-point terms (x_zp + 128) * sum_k B[k, n] are folded into bias' at compile
              time, so the inner loop is nothing but multiply-adds. Tiles of MR rows x NV
              vectors of output channels (up to 12 x 4 / 24 accumulators with 16 lanes).
                vnni512   AVX-512 VNNI: B as [Kp/4, Npad, 4] int8, one vpdpbusd per (row,
                          vector, 4 k): u8 x s8 products summed in 32-bit lanes, no saturation
                          (the non-"s" form; never vpmaddubsw, which saturates). Needs w - w_zp
                          within int8 (else generic).
                sdot      aarch64 with the dot-product extension (armv8.2-a+dotprod, the
                          "aarch64-linux-gnu+dotprod" AOT target): B laid out as for vnni512,
                          one sdot per (row, 4-lane vector, 4 k): s8 x s8 products summed in
                          32-bit lanes, exact. A is then signed (x as read for int8
                          activations, x - 128 for uint8: a_flip / a_offset), w - w_zp within
                          int8 (else generic).
                generic   any other target (the default aarch64 AOT one too): B as [Kp, Npad]
                          int16, sign-extended to i32 lanes, i32 multiply-add per k.
  depthwise   channels-last depthwise QLinearConv: vectors over channels (i32 lanes), up to 64
              channels of one output pixel per step, taps unrolled; the zero-point term folded
              into the bias, the zero-point-filled padded input read without bounds checks.
              4 taps per vpdpbusd, 2 per vpdpwssd, or an i32 multiply-add per tap (dw_mode).
              3-wide kernels at column stride 1 on AVX-512 VNNI: colpair_depthwise, two output
              columns from one transpose of four input columns per kernel row.

Requantization on AVX-512 converts with {rn-sae} (half to even whatever MXCSR says) and narrows
with vpackssdw / vpack[su]swb (LLVM's trunc + store becomes vpmovdb to memory, slow on AMD
Zen 4/5); elsewhere roundeven + trunc. Channel counts that are not a multiple of the vector width
end in a partial store of power-of-two pieces.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .codegen import KernelCtx
from .microkernels import row_tiles

LANES = 16        # i32 lanes per vector in the VNNI kernel (one zmm)
ACC_REGS = 24     # accumulators a tile may hold (of 32 zmm / 16 ymm registers)


def int8_dot(ctx: KernelCtx) -> str:
    """"vnni512" where the module targets an AVX-512 VNNI host, "sdot" an aarch64 one with the
    dot-product extension, else "generic"."""
    return str(getattr(ctx.cg, "int8_dot", "") or "generic")


def a_flip(mode: str, signed: bool) -> bool:
    """Whether the GEMM's A bytes are the activation bytes ^ 0x80: A is uint8 (x + 128 for int8
    x) for vnni512 / generic, int8 (x - 128 for uint8 x) for sdot."""
    return (not signed) if mode == "sdot" else signed


def a_offset(mode: str, zp: int, signed: bool) -> int:
    """The A value that stands for x = zp (padding holds it; the bias folds -offset * sum w)."""
    if mode == "sdot":
        return zp if signed else zp - 128
    return zp + 128 if signed else zp


def wrap_i32(v: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2^32 to int32 (the scalar loop's wrapping arithmetic)."""
    return ((v.astype(np.int64) + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


# -- vector helpers ------------------------------------------------------------------------------

def _declare(ctx: KernelCtx, name: str, ret: Any, args: list[Any]) -> Any:
    """An LLVM intrinsic with an explicit (vector) signature (llvmlite's declare_intrinsic only
    names scalar overloads)."""
    fn = ctx.cg.module.globals.get(name)
    if fn is None:
        fn = ctx.ir.Function(ctx.cg.module, ctx.ir.FunctionType(ret, args), name=name)
    return fn


class IVec:
    def __init__(self, ctx: KernelCtx, lanes: int) -> None:
        ir = ctx.ir
        self.ctx, self.b, self.n = ctx, ctx.b, lanes
        self.pack = int8_dot(ctx) == "vnni512"  # an AVX-512 BW target: narrow with vpack*
        self.i32v = ir.VectorType(ctx.i32, lanes)
        self.f32v = ir.VectorType(ctx.f32, lanes)
        self.i8v = ir.VectorType(ctx.i8, lanes)
        self.i16 = ir.IntType(16)
        self.i16v = ir.VectorType(self.i16, lanes)

    def const_i32(self, v: int) -> Any:
        return self.ctx.ir.Constant(self.i32v, [int(v)] * self.n)

    def const_f32(self, v: float) -> Any:
        return self.ctx.ir.Constant(self.f32v, [float(v)] * self.n)

    def splat(self, s: Any, ty: Any) -> Any:
        ir = self.ctx.ir
        undef = ir.Constant(ty, ir.Undefined)
        v = self.b.insert_element(undef, s, ir.Constant(ir.IntType(32), 0))
        return self.b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), self.n),
                                                           [0] * self.n))

    def load(self, p: Any, idx: Any, ty: Any, align: int = 1) -> Any:
        return self.b.load(self.ctx.gep(p, idx, ty.element), typ=ty, align=align)

    def requant(self, acc: Any, mult: Any, yzp: float, lo: float, hi: float,
                mult_max: float = float("inf")) -> Any:
        """<n x i32> = clamp(roundeven(float(acc) * mult) + yzp, lo, hi), as quant._to_q (the
        caller narrows it to bytes: store_q / scatter_q)."""
        b = self.b
        f = b.fmul(b.sitofp(acc, self.f32v), mult)
        if self.pack and self.n == 16:
            ir = self.ctx.ir
            cvt = _declare(self.ctx, "llvm.x86.avx512.mask.cvtps2dq.512", self.i32v,
                           [self.f32v, self.i32v, ir.IntType(16), ir.IntType(32)])
            if mult_max <= 0.5:
                # |float(acc) * mult| <= 2^30: the conversion ({rn-sae}: half to even, whatever
                # MXCSR says) and + yzp stay in range, and the saturating vpack* narrowing is
                # the clamp to the output type; a fused ReLU is one integer max. The same values:
                # beyond 2^24, where float rounding could differ, both saturate.
                q = b.call(cvt, [f, self.const_i32(0), ir.Constant(ir.IntType(16), -1),
                                 ir.Constant(ir.IntType(32), 8)])
                q = b.add(q, self.const_i32(int(yzp)))
                qmin = 0 if hi > 127 else -128
                if lo > qmin:
                    lo_v = self.const_i32(int(lo))
                    q = b.select(b.icmp_signed("<", q, lo_v), lo_v, q)
                return q
            # otherwise clamp first to the integer bounds less the zero point (the same result:
            # rounding is monotonic and the bounds are integers), then convert and add yzp
            f = b.select(b.fcmp_ordered("<", f, self.const_f32(lo - yzp)),
                         self.const_f32(lo - yzp), f)
            f = b.select(b.fcmp_ordered(">", f, self.const_f32(hi - yzp)),
                         self.const_f32(hi - yzp), f)
            q = b.call(cvt, [f, self.const_i32(0), ir.Constant(ir.IntType(16), -1),
                             ir.Constant(ir.IntType(32), 8)])
            return b.add(q, self.const_i32(int(yzp)))
        rnd = _declare(self.ctx, f"llvm.roundeven.v{self.n}f32", self.f32v, [self.f32v])
        r = b.fadd(b.call(rnd, [f]), self.const_f32(yzp))
        lo_v, hi_v = self.const_f32(lo), self.const_f32(hi)
        r = b.select(b.fcmp_unordered("<", r, lo_v), lo_v, r)
        r = b.select(b.fcmp_ordered(">", r, hi_v), hi_v, r)
        return b.fptosi(r, self.i32v)

    def _bytes(self, vs: list[Any], unsigned: bool, packed_order: bool = False) -> Any:
        """The requantized lanes of up to 4 vectors as one <len*n x i8> vector, in order.

        On AVX-512 (pack=True) through vpackssdw + vpack[su]swb and one dword permute: LLVM
        otherwise folds trunc + store into vpmovdb with a memory operand, which is slow on
        AMD Zen 4/5. Exact: the lanes already lie in the output type's range. packed_order
        (4 vectors, AVX-512): the bytes in the packs' own order, (128-bit lane L, vector v,
        dword i) at 16L + 4v + i, without the permute (the column-pair depthwise kernel's
        vectors hold their channels in that order, so its bytes come out in channel order)."""
        ctx, b, ir = self.ctx, self.b, self.ctx.ir
        k = len(vs)
        i32 = ir.IntType(32)
        assert not packed_order or (self.pack and self.n == 16 and k == 4)
        if not (self.pack and self.n == 16):
            parts = [b.trunc(v, self.i8v) for v in vs]
            while len(parts) > 1:  # concatenate pairwise (equal widths; an odd one doubled)
                if len(parts) % 2:
                    parts.append(parts[-1])
                parts = [b.shuffle_vector(parts[i], parts[i + 1], ir.Constant(
                    ir.VectorType(i32, 2 * parts[i].type.count),
                    list(range(2 * parts[i].type.count)))) for i in range(0, len(parts), 2)]
            out = parts[0]
            if out.type.count != k * self.n:
                out = b.shuffle_vector(out, out, ir.Constant(ir.VectorType(i32, k * self.n),
                                                             list(range(k * self.n))))
            return out
        vs = list(vs) + [vs[-1]] * (4 - k)
        i16v32 = ir.VectorType(ir.IntType(16), 32)
        i8v64 = ir.VectorType(ctx.i8, 64)
        pdw = _declare(ctx, "llvm.x86.avx512.packssdw.512", i16v32, [self.i32v, self.i32v])
        wb = "llvm.x86.avx512.packuswb.512" if unsigned else "llvm.x86.avx512.packsswb.512"
        pwb = _declare(ctx, wb, i8v64, [i16v32, i16v32])
        ab = b.call(pdw, [vs[0], vs[1]])
        cd = b.call(pdw, [vs[2], vs[3]])
        packed = b.bitcast(b.call(pwb, [ab, cd]), self.i32v)
        if packed_order:
            return b.bitcast(packed, i8v64)
        # dword (lane L, vector v) sits at 4L + v; vector v's 16 bytes belong at 4v .. 4v + 3
        order = [4 * lane + v for v in range(4) for lane in range(4)][:4 * k]
        out = b.shuffle_vector(packed, packed, ir.Constant(ir.VectorType(i32, 4 * k), order))
        return b.bitcast(out, ir.VectorType(ctx.i8, 16 * k))

    def store_q(self, vs: list[Any], p: Any, idx: Any, valid: int, unsigned: bool,
                packed_order: bool = False) -> None:
        """Store the first `valid` requantized lanes of vs (consecutive vectors) at p[idx]
        (packed_order: as _bytes)."""
        ctx, b, ir = self.ctx, self.b, self.ctx.ir
        v = self._bytes(vs, unsigned, packed_order)
        n = v.type.count
        if valid >= n:
            b.store(v, ctx.gep(p, idx, ctx.i8), align=1)
            return
        # a partial vector: plain stores of power-of-two pieces (no llvm.masked.store: LLVM 22
        # turns a v8i8 one with a single-lane constant mask into a 4-byte store)
        i32 = ir.IntType(32)
        at = 0
        for size in (32, 16, 8, 4, 2, 1):
            if valid - at >= size:
                piece = b.extract_element(v, ir.Constant(i32, at)) if size == 1 else \
                    b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, size),
                                                       list(range(at, at + size))))
                b.store(piece, ctx.gep(p, ctx.add(idx, at), ctx.i8), align=1)
                at += size

    def scatter_q(self, v: Any, p: Any, idx: Any, stride: int, valid: int,
                  unsigned: bool) -> None:
        """Lane l of one requantized vector to p[idx + l * stride], l < valid (channels-first)."""
        ctx, ir = self.ctx, self.ctx.ir
        q = self._bytes([v], unsigned)  # narrowed (and saturated, on AVX-512) as store_q does
        for lane in range(min(valid, self.n)):
            e = self.b.extract_element(q, ir.Constant(ir.IntType(32), lane))
            ctx.store(e, p, ctx.add(idx, lane * stride))


def _vpdpbusd(ctx: KernelCtx, vec: IVec, acc: Any, a: Any, bq: Any) -> Any:
    """acc + sum of 4 u8(a) x s8(b) products per 32-bit lane (AVX-512 VNNI, no saturation)."""
    fn = _declare(ctx, "llvm.x86.avx512.vpdpbusd.512", vec.i32v, [vec.i32v] * 3)
    return ctx.b.call(fn, [acc, a, bq])


def _sdot(ctx: KernelCtx, vec: IVec, acc: Any, a: Any, bq: Any) -> Any:
    """acc + sum of 4 s8(a) x s8(b) products per 32-bit lane (aarch64 dotprod: SDOT, exact)."""
    i8v16 = ctx.ir.VectorType(ctx.i8, 16)
    fn = _declare(ctx, "llvm.aarch64.neon.sdot.v4i32.v16i8", vec.i32v, [vec.i32v, i8v16, i8v16])
    return ctx.b.call(fn, [acc, ctx.b.bitcast(a, i8v16), ctx.b.bitcast(bq, i8v16)])


# -- weight packing (compile time) ------------------------------------------------------------------

def pack_weights(wk: np.ndarray, mode: str) -> tuple[np.ndarray, int, int]:
    """wk: [G, N, K] int64 (w - w_zp) per group. Returns (packed bytes, Kp, Npad):
    vnni512 / sdot [G, Kp/4, Npad, 4] int8; generic [G, Kp, Npad] int16. Padding is zero."""
    G, N, K = wk.shape
    Kp = (K + 3) // 4 * 4
    Npad = (N + LANES - 1) // LANES * LANES
    full = np.zeros((G, Npad, Kp), np.int64)
    full[:, :N, :K] = wk
    if mode in ("vnni512", "sdot"):
        arr = full.reshape(G, Npad, Kp // 4, 4).transpose(0, 2, 1, 3).astype(np.int8)
    else:
        arr = full.transpose(0, 2, 1).astype(np.int16)
    return np.ascontiguousarray(arr), Kp, Npad


def vnni_ok(wk: np.ndarray) -> bool:
    return bool(wk.size == 0 or (wk.min() >= -128 and wk.max() <= 127))


# -- GEMM -------------------------------------------------------------------------------------------

def qgemm(ctx: KernelCtx, mode: str, M: int, N: int, Kp: int, Npad: int,
          pa: Any, a_off: Any, pb: Any, b_off: Any, bias_p: Any, mult_p: Any, nb_off: Any,
          py: Any, y_off: Any, m_stride: int, n_stride: int,
          yzp: float, lo: float, hi: float, mult_max: float = float("inf")) -> None:
    """Y[y_off + m*m_stride + n*n_stride] = requant(bias[nb_off + n] + sum_k A(m, k) B(k, n)) for
    m < M, n < N. A(m, k) = pa[a_off + m*Kp + k] (u8; s8 for sdot); B at pb + b_off elements of
    the packed layout (pack_weights); bias (i32) and mult (f32) padded to Npad from nb_off."""
    b = ctx.b
    if mode == "vnni512":
        lanes, step = LANES, 4
    elif mode == "sdot":
        lanes, step = 4, 4  # one 128-bit NEON register of i32 lanes
    else:
        lanes = 16 if int(getattr(ctx.cg, "vector_width", 8)) >= 16 else 8
        step = 1
    vec = IVec(ctx, lanes)
    unsigned = hi > 127
    nvec_all = Npad // lanes
    nv = max(1, min(nvec_all, 4))
    # AVX-512 and NEON have 32 vector registers, AVX2 16
    mr = max(1, min(12, ACC_REGS // nv)) if lanes == 16 or mode == "sdot" else \
        max(1, min(4, 8 // nv))
    if M < mr:
        mr = M
    ksteps = Kp // step

    def a_word(m: Any, k: Any) -> Any:
        """A(m, k .. k+step-1) as i32 (4 bytes for vnni512 / sdot, a zero-extended u8 one
        otherwise)."""
        idx = ctx.add(a_off, ctx.mul(m, Kp), ctx.mul(k, step))
        if step == 4:
            return b.load(ctx.gep(pa, idx, ctx.i8), typ=ctx.i32, align=4)
        return b.zext(ctx.load(pa, idx, ctx.i8), ctx.i32)

    def b_vec(k: Any, n0: Any) -> Any:
        if step == 4:  # [Kp/4, Npad, 4] bytes: lanes n0 .. n0+lanes-1, 4 k each, as i32 words
            idx = ctx.add(b_off, ctx.mul(k, Npad * 4), ctx.mul(n0, 4))
            return b.load(ctx.gep(pb, idx, ctx.i8), typ=vec.i32v, align=4)
        idx = ctx.add(b_off, ctx.mul(k, Npad), n0)
        return b.sext(vec.load(pb, idx, vec.i16v, 2), vec.i32v)

    def tile(m0: Any, rows: int, n0: Any, n0_static: Optional[int], vecs: int) -> None:
        from .microkernels import carried_loop
        init = [vec.load(bias_p, ctx.add(nb_off, n0, j * lanes), vec.i32v, 4)
                for _ in range(rows) for j in range(vecs)]

        def body(k: Any, accs: list[Any]) -> list[Any]:
            bv = [b_vec(k, ctx.add(n0, j * lanes)) for j in range(vecs)]
            out = []
            for i in range(rows):
                av = vec.splat(a_word(ctx.add(m0, i), k), vec.i32v)
                for j in range(vecs):
                    acc = accs[i * vecs + j]
                    if mode == "sdot":
                        out.append(_sdot(ctx, vec, acc, av, bv[j]))
                    elif step == 4:
                        out.append(_vpdpbusd(ctx, vec, acc, av, bv[j]))
                    else:
                        out.append(b.add(acc, b.mul(av, bv[j])))
            return out

        accs = carried_loop(ctx, ksteps, init, body)
        mults = [vec.load(mult_p, ctx.add(nb_off, n0, j * lanes), vec.f32v, 4)
                 for j in range(vecs)]
        valid = [lanes if n0_static is None else min(lanes, N - (n0_static + j * lanes))
                 for j in range(vecs)]
        for i in range(rows):
            qs = [vec.requant(accs[i * vecs + j], mults[j], yzp, lo, hi, mult_max)
                  for j in range(vecs)]
            at = ctx.add(y_off, ctx.mul(ctx.add(m0, i), m_stride), ctx.mul(n0, n_stride))
            if n_stride == 1:
                vec.store_q(qs, py, at, sum(valid), unsigned)
            else:
                for j in range(vecs):
                    vec.scatter_q(qs[j], py, ctx.add(at, j * lanes * n_stride), n_stride,
                                  valid[j], unsigned)

    # output channels: full groups of nv vectors that end within N run in a loop; the rest
    # (fewer vectors, or ones that reach into the padding) are written out statically
    n_loop = (N // (nv * lanes)) * (nv * lanes)

    def row_block(m0: Any, rows: int) -> None:
        if n_loop:
            with ctx.loop(n_loop, step=nv * lanes, name="n0") as n0:
                tile(m0, rows, n0, None, nv)
        n = n_loop
        while n < N:
            vecs = min(nv, (N - n + lanes - 1) // lanes)  # none wholly past N
            tile(m0, rows, ctx.ci(n), n, vecs)
            n += vecs * lanes

    row_tiles(ctx, M, mr, row_block)


# -- depthwise ----------------------------------------------------------------------------------------

def dw_mode(ctx: KernelCtx, taps: np.ndarray) -> str:
    """The depthwise kernel's multiply-add: "quads" (4 taps per vpdpbusd or sdot; AVX-512 VNNI
    or aarch64 dotprod, and w - w_zp within int8), "pairs" (2 taps per vpdpwssd; AVX-512 VNNI)
    or "i32" (any target)."""
    if int8_dot(ctx) == "sdot":
        return "quads" if vnni_ok(taps) else "i32"
    if int8_dot(ctx) != "vnni512":
        return "i32"
    return "quads" if vnni_ok(taps) else "pairs"


def depthwise(ctx: KernelCtx, g: dict[str, Any], xpad: Any, signed: bool, wv_arr: np.ndarray,
              bias_arr: np.ndarray, mult_arr: np.ndarray, py: Any, y_off: Any, nhwc_out: bool,
              yzp: float, lo: float, hi: float, mode: str = "i32",
              mult_max: float = float("inf")) -> None:
    """y[oy, ox, c] = requant(bias'[c] + sum_t x[.., c] w'[t, c]) over the zero-point-padded
    channels-last int8 input xpad [Hp, Wp, C] (read up to one vector past C: the caller leaves
    room); wv_arr: [T, Cpad] int32 tap weights, bias_arr (bias', int32) / mult_arr (float32)
    padded to Cpad. Up to 4 vectors of
    channels per pixel (one 64-byte store of the output pixel's bytes). mode (dw_mode):
      quads  4 taps per vpdpbusd: the 4 taps' bytes of a channel interleaved into its 32-bit
             lane (one byte permute), x read as uint8 (the caller moved it), w int8; or per
             sdot (aarch64 dotprod, 4 lanes each), x read as int8
      pairs  2 taps per vpdpwssd (int16 pairs: x in [-128, 255], w - w_zp in [-255, 255])
      i32    an i32 multiply-add per tap (every target)
    Every product and sum is exact in int32. Quads on AVX-512 VNNI with 3-tap kernel rows at
    column stride and dilation 1 over whole 64-channel chunks (or 16 or 32 channels) run
    colpair_depthwise instead."""
    C, OH, OW, KH, KW = g["C"], g["OH"], g["OW"], g["KH"], g["KW"]
    Wp, sy, sx, dy, dx = g["Wp"], g["sy"], g["sx"], g["dy"], g["dx"]
    widest = int(getattr(ctx.cg, "vector_width", 8))
    lanes = 16 if widest >= 16 else 8
    if colpair_ok(ctx, g, mode):
        colpair_depthwise(ctx, g, xpad, wv_arr, bias_arr, mult_arr, py, y_off, nhwc_out, yzp,
                          lo, hi, mult_max)
        return
    bias_p, mult_p = ctx.array_ptr(bias_arr, "qdw_b"), ctx.array_ptr(mult_arr, "qdw_mult")
    vec = IVec(ctx, lanes)
    b = ctx.b
    Cpad = (C + lanes - 1) // lanes * lanes
    P = OH * OW
    unsigned = hi > 127
    wv_p = ctx.array_ptr(wv_arr, "qdw_w")
    offs = [(ky * dy * Wp + kx * dx) * C for ky in range(KH) for kx in range(KW)]
    pairs = mode == "pairs" and lanes == 16
    quads = mode == "quads" and (lanes == 16 or int8_dot(ctx) == "sdot")
    wp_p = None
    if pairs:
        wp_p = ctx.array_ptr(pair_taps(wv_arr), "qdw_wpairs")
    if quads:
        wp_p = ctx.array_ptr(quad_taps(wv_arr), "qdw_wquads")

    def channels(c0: Any, vecs: int, valid: int) -> None:
        bv = [vec.load(bias_p, ctx.add(c0, j * lanes), vec.i32v, 4) for j in range(vecs)]
        mult = [vec.load(mult_p, ctx.add(c0, j * lanes), vec.f32v, 4) for j in range(vecs)]
        with ctx.loop(OH, name="oy") as oy:
            row = ctx.mul(oy, sy * Wp * C)
            with ctx.loop(OW, name="ox") as ox:
                base = ctx.add(row, ctx.mul(ox, sx * C), c0)
                accs = list(bv)
                if pairs:
                    for t in range(0, len(offs), 2):
                        for j in range(vecs):
                            accs[j] = _dw_pair(ctx, vec, accs[j], xpad, base, offs, t, j, signed,
                                               wp_p, ctx.add(c0, t // 2 * Cpad + j * lanes))
                if quads:
                    for t in range(0, len(offs), 4):
                        for j in range(vecs):
                            accs[j] = _dw_quad(ctx, vec, accs[j], xpad, base, offs, t, j,
                                               wp_p, ctx.add(c0, t // 4 * Cpad + j * lanes))
                for t, off in enumerate([] if pairs or quads else offs):
                    for j in range(vecs):
                        xv = vec.load(xpad, ctx.add(base, off + j * lanes), vec.i8v)
                        xv = b.sext(xv, vec.i32v) if signed else b.zext(xv, vec.i32v)
                        wv = vec.load(wv_p, ctx.add(c0, t * Cpad + j * lanes), vec.i32v, 4)
                        accs[j] = b.add(accs[j], b.mul(xv, wv))
                qs = [vec.requant(accs[j], mult[j], yzp, lo, hi, mult_max) for j in range(vecs)]
                p = ctx.add(ctx.mul(oy, OW), ox)
                if nhwc_out:
                    vec.store_q(qs, py, ctx.add(y_off, ctx.mul(p, C), c0), valid, unsigned)
                else:
                    for j in range(vecs):
                        vec.scatter_q(qs[j], py, ctx.add(y_off, ctx.mul(ctx.add(c0, j * lanes), P),
                                                         p), P, min(lanes, valid - j * lanes),
                                      unsigned)

    chunk = 4 * lanes
    c_full = C // chunk * chunk
    if c_full:
        with ctx.loop(c_full, step=chunk, name="c0") as c0:
            channels(c0, 4, chunk)
    if C - c_full:
        channels(ctx.ci(c_full), (C - c_full + lanes - 1) // lanes, C - c_full)


def pair_taps(wv: np.ndarray) -> np.ndarray:
    """[T, Cpad] tap weights -> [ceil(T/2), Cpad] int32 words holding the int16 pair
    (w[2i], w[2i+1]) (low half first; a missing last tap is 0)."""
    T, Cp = wv.shape
    w = np.zeros(((T + 1) // 2 * 2, Cp), np.int64)
    w[:T] = wv
    lo16 = w[0::2] & 0xFFFF
    hi16 = w[1::2] & 0xFFFF
    return wrap_i32(lo16 | (hi16 << 16))


def _dw_pair(ctx: KernelCtx, vec: IVec, acc: Any, xpad: Any, base: Any, offs: list[int], t: int,
             j: int, signed: bool, wp_p: Any, w_idx: Any) -> Any:
    """acc + x[t] w[t] + x[t+1] w[t+1] over 16 channels with one vpdpwssd (x[t+1] is x[t]
    again, against a zero weight, when t is the last tap)."""
    b, ir = ctx.b, ctx.ir
    i16v = vec.i16v
    ext = b.sext if signed else b.zext
    x0 = ext(vec.load(xpad, ctx.add(base, offs[t] + j * vec.n), vec.i8v), i16v)
    t1 = t + 1 if t + 1 < len(offs) else t
    x1 = ext(vec.load(xpad, ctx.add(base, offs[t1] + j * vec.n), vec.i8v), i16v)
    i32 = ir.IntType(32)
    inter = [i // 2 + (vec.n if i % 2 else 0) for i in range(2 * vec.n)]
    xx = b.shuffle_vector(x0, x1, ir.Constant(ir.VectorType(i32, 2 * vec.n), inter))
    w = vec.load(wp_p, w_idx, vec.i32v, 4)
    fn = _declare(ctx, "llvm.x86.avx512.vpdpwssd.512", vec.i32v, [vec.i32v] * 3)
    return b.call(fn, [acc, b.bitcast(xx, vec.i32v), w])


def quad_taps(wv: np.ndarray) -> np.ndarray:
    """[T, Cpad] tap weights (within int8) -> [ceil(T/4), Cpad] int32 words holding the bytes
    (w[4i], .., w[4i+3]) (lowest first; missing taps 0)."""
    T, Cp = wv.shape
    w = np.zeros(((T + 3) // 4 * 4, Cp), np.int64)
    w[:T] = wv
    q = w.reshape(-1, 4, Cp) & 0xFF
    return wrap_i32(q[:, 0] | (q[:, 1] << 8) | (q[:, 2] << 16) | (q[:, 3] << 24))


def _dw_quad(ctx: KernelCtx, vec: IVec, acc: Any, xpad: Any, base: Any, offs: list[int], t: int,
             j: int, wq_p: Any, w_idx: Any) -> Any:
    """acc + sum_{i<4} x[t+i] w[t+i] over the vector's channels with one vpdpbusd (uint8 x) or
    one sdot per 4 lanes (int8 x): the four taps' bytes of channel c are interleaved into lane
    c (taps past the last one read tap t again, against zero weights)."""
    b, ir = ctx.b, ctx.ir
    i32 = ir.IntType(32)
    n = vec.n
    xs = [vec.load(xpad, ctx.add(base, offs[min(t + i, len(offs) - 1)] + j * n), vec.i8v)
          for i in range(4)]
    lo = b.shuffle_vector(xs[0], xs[1], ir.Constant(ir.VectorType(i32, 2 * n), list(range(2 * n))))
    hi = b.shuffle_vector(xs[2], xs[3], ir.Constant(ir.VectorType(i32, 2 * n), list(range(2 * n))))
    order = [(i % 2) * n + c + (2 * n if i >= 2 else 0) for c in range(n) for i in range(4)]
    xx = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, 4 * n), order))
    w = vec.load(wq_p, w_idx, vec.i32v, 4)
    xw = b.bitcast(xx, vec.i32v)
    if int8_dot(ctx) != "sdot":
        return _vpdpbusd(ctx, vec, acc, xw, w)
    q = IVec(ctx, 4)
    parts = []
    for h in range(0, n, 4):  # 4 channels (one 128-bit register) per sdot
        sel = ir.Constant(ir.VectorType(i32, 4), list(range(h, h + 4)))
        parts.append(_sdot(ctx, q, b.shuffle_vector(acc, acc, sel),
                           b.shuffle_vector(xw, xw, sel), b.shuffle_vector(w, w, sel)))
    while len(parts) > 1:
        m = parts[0].type.count
        parts = [b.shuffle_vector(parts[i], parts[i + 1], ir.Constant(
            ir.VectorType(i32, 2 * m), list(range(2 * m)))) for i in range(0, len(parts), 2)]
    return parts[0]


# -- depthwise, column pairs ---------------------------------------------------------------------

# lane l = 4 * L + i of vector v (0..3) of a 64-channel chunk holds channel 16 * L + 4 * v + i: the
# order the in-lane byte/word unpacks leave 4 columns' bytes in, and the one vpackssdw +
# vpack[su]swb undo (IVec._bytes(packed_order=True) gives the bytes in channel order)
COLPAIR_PERM = np.array([16 * L + 4 * v + i for v in range(4) for L in range(4) for i in range(4)])


def colpair_ok(ctx: KernelCtx, g: dict[str, Any], mode: str) -> bool:
    return (mode == "quads" and int8_dot(ctx) == "vnni512"
            and int(getattr(ctx.cg, "vector_width", 8)) >= 16 and g["KW"] == 3
            and g["sx"] == 1 and g["dx"] == 1 and (g["C"] % 64 == 0 or g["C"] in (16, 32)))


def colpair_weights(wv: np.ndarray, C: int, KH: int) -> np.ndarray:
    """[KH*3, Cpad] tap weights (within int8) -> [KH, C] int32 words (w[ky, 0], w[ky, 1],
    w[ky, 2], 0) (lowest byte first), in colpair_order."""
    w = wv[:, :C].astype(np.int64).reshape(KH, 3, C) & 0xFF
    return colpair_order(wrap_i32(w[:, 0] | (w[:, 1] << 8) | (w[:, 2] << 16)))


def colpair_order(a: np.ndarray) -> np.ndarray:
    """[..., C] per-channel values with each 64-channel chunk in COLPAIR_PERM order (16 or 32
    channels stay in order)."""
    C = a.shape[-1]
    if C % 64:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a.reshape(*a.shape[:-1], C // 64, 64)[..., COLPAIR_PERM]
                                .reshape(a.shape))


def _unpack(ctx: KernelCtx, a: Any, b_: Any, width: int, high: bool) -> Any:
    """x86 punpck{l,h}{bw,wd} on 512 bits: per 128-bit lane, the low (high) halves of a and b
    interleaved, `width`-bit elements."""
    ir = ctx.ir
    per = 128 // width           # elements per 128-bit lane
    n = 512 // width
    mask = []
    for L in range(4):
        for i in range(per // 2):
            e = L * per + i + (per // 2 if high else 0)
            mask += [e, n + e]
    return ctx.b.shuffle_vector(a, b_, ir.Constant(ir.VectorType(ir.IntType(32), n), mask))


def colpair_depthwise(ctx: KernelCtx, g: dict[str, Any], xpad: Any, wv_arr: np.ndarray,
                      bias_arr: np.ndarray, mult_arr: np.ndarray, py: Any, y_off: Any,
                      nhwc_out: bool, yzp: float, lo: float, hi: float, mult_max: float) -> None:
    """The quads depthwise kernel for 3-tap kernel rows at column stride and dilation 1
    (AVX-512 VNNI; whole 64-channel chunks, or 16 or 32 channels): output columns in pairs
    (ox, ox + 1). Per kernel row, the four input columns ox .. ox + 3 (64 channels each, uint8)
    go through one 4x4 byte transpose (4 byte + 4 word unpacks) into 4 vectors of per-channel
    quads (x[ox], .., x[ox + 3]); column ox takes them against (w0, w1, w2, 0), column ox + 1
    takes them shifted down a byte (x[ox + 1], .., x[ox + 3], 0) against the same weights. So
    4 loads, 8 unpacks and 4 shifts feed 8 vpdpbusd, where the general quads path gathers each
    vpdpbusd's quads from four 16-byte loads and a byte permute. Channels sit in COLPAIR_PERM
    order in the accumulators, which the packs undo. An odd last column takes column ox + 2
    again as its fourth (zero weight). With 16 or 32 channels the four columns are 64 or 128
    contiguous bytes, one or two loads, and one byte permute per 16 channels makes their quads
    in channel order; an odd last column's fourth is then the next pixel's bytes, or the
    buffer's slack (zero weight). Exact as the general path (the same products and sums); every
    read lies in the padded input or the 64-byte slack after it (Wp = OW + 2: column ox + 3
    of the last pair is at most Wp - 1, an odd last column's at most Wp)."""
    C, OH, OW, KH = g["C"], g["OH"], g["OW"], g["KH"]
    Wp, sy, dy = g["Wp"], g["sy"], g["dy"]
    P = OH * OW
    b, ir = ctx.b, ctx.ir
    vec = IVec(ctx, 16)
    unsigned = hi > 127
    i8v64 = ir.VectorType(ctx.i8, 64)
    i16v32 = ir.VectorType(ir.IntType(16), 32)
    wq_p = ctx.array_ptr(colpair_weights(wv_arr, C, KH), "qdw_cp_w")
    b_p = ctx.array_ptr(colpair_order(bias_arr[:C].astype(np.int32)), "qdw_cp_b")
    m_p = ctx.array_ptr(colpair_order(mult_arr[:C].astype(np.float32)), "qdw_cp_mult")
    eight = vec.const_i32(8)

    def quads(at: Any, ncols: int) -> list[Any]:
        cols = [vec.load(xpad, ctx.add(at, j * C), i8v64) for j in range(ncols)]
        cols += [cols[-1]] * (4 - ncols)
        t = [_unpack(ctx, cols[0], cols[1], 8, False), _unpack(ctx, cols[0], cols[1], 8, True),
             _unpack(ctx, cols[2], cols[3], 8, False), _unpack(ctx, cols[2], cols[3], 8, True)]
        t = [b.bitcast(v, i16v32) for v in t]
        q = [_unpack(ctx, t[0], t[2], 16, False), _unpack(ctx, t[0], t[2], 16, True),
             _unpack(ctx, t[1], t[3], 16, False), _unpack(ctx, t[1], t[3], 16, True)]
        return [b.bitcast(v, vec.i32v) for v in q]

    narrow = C % 64 != 0  # 16 or 32 channels
    nv = C // 16 if narrow else 4

    def narrow_quads(at: Any) -> list[Any]:
        """(16 or 32 channels) the bytes of columns ox .. ox + 3 as one or two 64-byte loads;
        vector h: channel 16h + c's quad in lane c."""
        z = [vec.load(xpad, ctx.add(at, 64 * j), i8v64) for j in range(C // 16)]
        if C == 16:
            mask = [16 * j + c for c in range(16) for j in range(4)]
            out = [b.shuffle_vector(z[0], z[0], ir.Constant(ir.VectorType(ir.IntType(32), 64),
                                                             mask))]
        else:
            out = [b.shuffle_vector(z[0], z[1], ir.Constant(ir.VectorType(ir.IntType(32), 64),
                                    [32 * j + 16 * h + c for c in range(16) for j in range(4)]))
                   for h in range(2)]
        return [b.bitcast(v, vec.i32v) for v in out]

    def store(accs: list[Any], mult: list[Any], oy: Any, ox: Any, c0: Any) -> None:
        qs = [vec.requant(a, m, yzp, lo, hi, mult_max) for a, m in zip(accs, mult)]
        p = ctx.add(ctx.mul(oy, OW), ox)
        if narrow:
            if nhwc_out:
                vec.store_q(qs, py, ctx.add(y_off, ctx.mul(p, C)), C, unsigned)
            else:
                for h, q in enumerate(qs):
                    vec.scatter_q(q, py, ctx.add(y_off, 16 * h * P, p), P, 16, unsigned)
            return
        if nhwc_out:
            vec.store_q(qs, py, ctx.add(y_off, ctx.mul(p, C), c0), 64, unsigned,
                        packed_order=True)
            return
        v = vec._bytes(qs, unsigned, packed_order=True)
        for c in range(64):
            e = b.extract_element(v, ir.Constant(ir.IntType(32), c))
            ctx.store(e, py, ctx.add(y_off, ctx.mul(ctx.add(c0, c), P), p))

    with ctx.loop(C, step=64 if not narrow else C, name="c0") as c0:
        w = [[vec.load(wq_p, ctx.add(c0, ky * C + v * 16), vec.i32v, 4) for v in range(nv)]
             for ky in range(KH)]
        bias = [vec.load(b_p, ctx.add(c0, v * 16), vec.i32v, 4) for v in range(nv)]
        mult = [vec.load(m_p, ctx.add(c0, v * 16), vec.f32v, 4) for v in range(nv)]

        def columns(oy: Any, ox: Any, pair: bool) -> None:
            acc_a, acc_b = list(bias), list(bias)
            for ky in range(KH):
                at = ctx.add(ctx.mul(oy, sy * Wp * C), ctx.mul(ox, C), ky * dy * Wp * C, c0)
                q = narrow_quads(at) if narrow else quads(at, 4 if pair else 3)
                for v in range(nv):
                    acc_a[v] = _vpdpbusd(ctx, vec, acc_a[v], q[v], w[ky][v])
                    if pair:  # (x[ox + 1], x[ox + 2], x[ox + 3], 0): a shift, not 12 loads
                        acc_b[v] = _vpdpbusd(ctx, vec, acc_b[v], b.lshr(q[v], eight), w[ky][v])
            store(acc_a, mult, oy, ox, c0)
            if pair:
                store(acc_b, mult, oy, ctx.add(ox, 1), c0)

        with ctx.loop(OH, name="oy") as oy:
            if OW // 2:
                with ctx.loop(OW // 2 * 2, step=2, name="ox") as ox:
                    columns(oy, ox, True)
            if OW % 2:
                columns(oy, ctx.ci(OW - 1), False)
