"""Register-tiled kernels the op library lowers its heavy ops onto, written with explicit LLVM
vector types (<8 x float>) so the accumulators live in registers for a whole reduction.

  gemm        C[M, N] = A[M, K] . B[K, N] (+ a row or column bias): Gemm, MatMul, Conv as a
              GEMM over an im2col matrix (either orientation; read in place through offset
              tables where the input allows, see a_tables / b_rows), the recurrent
              matrix-vector products. Tiles of MR rows x NV vectors (4 x 2 with 8-float vectors,
              up to 6 x 4 = 24 accumulators with 16-float ones): each k step loads NV vectors of
              B, broadcasts MR scalars of A and issues MR*NV FMAs. Columns past the last full
              vector get one more vector tile ending at N, overlapping columns already written
              (same sums, same order, same values); only N < 8 runs a scalar loop. One row (M = 1)
              goes to _matvec: every output vector in one k loop, k split into up to 4 partial
              sums so the FMA chain a recurrent step waits on is short; matvec_regs returns
              chosen output vectors in registers instead (the GRU step's gate vectors).
  depthwise   channels-last depthwise convolution over a zero-padded input: one output pixel's
              channels in vectors, the tap weights held in registers, the taps unrolled (any
              stride, dilation, padding).

<8 x float> is one AVX2 register and two NEON registers on aarch64; on a host with AVX-512 a
kernel whose vector dim holds at least four <16 x float> (one zmm register each), or a multiple
of 16 channels in the depthwise kernel, uses those. Scalar twins of these kernels are the plain
loops in ops.py (used with
EDGERT_SENSOR_KERNELS=scalar, and compared in tests/test_sensor_ops.py).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from .codegen import KernelCtx

VW = 8          # floats per vector (the default; Codegen.vector_width overrides it: 16 on AVX-512)
MR = 4          # rows per tile
NV = 2          # vectors per tile (MR * NV accumulators)


def vector_width(ctx: KernelCtx, extent: int = 0) -> int:
    """Floats per vector for a kernel whose vector dim has `extent` elements: the target's widest
    (16 on AVX-512) where at least 4 such vectors fill it or they fill it exactly; other short
    rows keep 8 (fewer wasted lanes in the overlapping tail), and a row of 4 takes 4 (one
    vector, where 8 would leave it to scalar loops: a classifier head's 4 outputs)."""
    widest = int(getattr(ctx.cg, "vector_width", VW))
    if extent == 4 and widest > 4:
        return 4
    return widest if extent >= 4 * widest or (extent and extent % widest == 0) \
        else min(widest, VW)


class Vec:
    """Vector helpers bound to a KernelCtx."""

    def __init__(self, ctx: KernelCtx, width: int = VW) -> None:
        ir = ctx.ir
        self.ctx = ctx
        self.b = ctx.b
        vw = width
        self.ty = ir.VectorType(ctx.f32, vw)
        self.zero = ir.Constant(self.ty, [0.0] * vw)
        self._mask0 = ir.Constant(ir.VectorType(ir.IntType(32), vw), [0] * vw)
        self._undef = ir.Constant(self.ty, ir.Undefined)

    def load(self, p: Any, idx: Any) -> Any:
        return self.b.load(self.ctx.gep(p, idx), typ=self.ty, align=4)

    def store(self, v: Any, p: Any, idx: Any) -> None:
        self.b.store(v, self.ctx.gep(p, idx, self.ctx.f32), align=4)

    def splat(self, s: Any) -> Any:
        ir = self.ctx.ir
        v = self.b.insert_element(self._undef, s, ir.Constant(ir.IntType(32), 0))
        return self.b.shuffle_vector(v, self._undef, self._mask0)

    def fma(self, acc: Any, a: Any, b: Any) -> Any:
        return self.b.fadd(acc, self.b.fmul(a, b, flags=("contract",)), flags=("contract",))


def row_tiles(ctx: KernelCtx, M: int, mr: int, row_block: Callable[[Any, int], None]) -> None:
    """row_block(m0, rows) over M rows: a loop over the whole tiles of mr rows, then one call for
    the M % mr rows left."""
    m_full = M // mr * mr
    if m_full:
        with ctx.loop(m_full, step=mr, name="m0") as m0:
            row_block(m0, mr)
    if M - m_full:
        row_block(ctx.ci(m_full), M - m_full)


def carried_loop(ctx: KernelCtx, n: int, init: Sequence[Any], body: Callable[[Any, list[Any]],
                 list[Any]], name: str = "k") -> list[Any]:
    """for i in range(n): vals = body(i, vals); returns the final vals (phi-carried, so they stay
    in registers)."""
    ir, b = ctx.ir, ctx.b
    if n <= 0:
        return list(init)
    fn = b.function
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    end = fn.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(ctx.i64, name=name)
    i.add_incoming(ctx.ci(0), pre)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    new = body(i, list(phis))
    nxt = b.add(i, ctx.ci(1), flags=["nsw"])
    latch = b.block
    i.add_incoming(nxt, latch)
    for p, v in zip(phis, new):
        p.add_incoming(v, latch)
    b.cbranch(b.icmp_signed("<", nxt, ctx.ci(n)), head, end)
    b.position_at_end(end)
    # values after the loop: the last iteration's results
    return new


def gemm(ctx: KernelCtx, M: int, N: int, K: int,
         pa: Any, a_off: Any, lda: int,
         pb: Any, b_off: Any, ldb: int,
         pc: Any, c_off: Any, ldc: int,
         row_bias: Optional[Any] = None, col_bias: Optional[Any] = None,
         a_col_stride: int = 1, a_tables: Optional[tuple[Any, Any]] = None,
         b_rows: Optional[Any] = None, epilogue: Optional[Callable[[Any], Any]] = None) -> None:
    """C[m, n] = epilogue(sum_k A[m, k] B[k, n] + row_bias[m] + col_bias[n]), row-major with
    leading dims; epilogue (a function of the value, scalar or vector, the same at every
    element: ops.uniform_epilogue) is applied before the stores, so no pass over C follows.

    A(m, k) is pa[a_off + m*lda + k*a_col_stride], or with a_tables = (rows, ks) (two i64
    constant tables) pa[a_off + rows[m] + ks[k]]: an implicit im2col, where A's row m is output
    pixel m's window over a padded input and nothing is copied. B(k, n) is pb[b_off + k*ldb + n]
    (unit stride in n: that is the vector dim), or with b_rows (an i64 constant table)
    pb[b_off + b_rows[k] + n]: row k of an implicit im2col of a one-row, stride-1 conv, a shifted
    window of the padded input; C likewise with ldc. Biases are f32 pointers or None."""
    VW = vector_width(ctx, N)  # noqa: N806
    vec = Vec(ctx, VW)
    b = ctx.b
    if M == 1 and N >= VW and row_bias is None and a_tables is None and b_rows is None \
            and epilogue is None:
        _matvec(ctx, N, K, vec, VW, pa, a_off, a_col_stride, pb, b_off, ldb, pc, c_off, col_bias)
        return
    mr = 1 if M == 1 else MR
    # a matrix-vector product: as many accumulators as the row needs (up to 12 registers), so
    # the k loop's FMA chains run side by side instead of one short tile after another
    nv = max(1, min(N // VW, 12)) if M == 1 else NV
    if M > 1 and int(getattr(ctx.cg, "vector_width", VW)) >= 16:
        # 32 vector registers (an AVX-512 host, whichever width this GEMM uses): up to 24
        # accumulators, e.g. 6 rows x 4 vectors, so each k step issues 24 FMAs for 4 loads and
        # 6 broadcasts (the 4 x 2 tile: 8 for 2 + 4)
        nv = max(1, min(N // VW, 4))
        mr = min(12, 24 // nv)
    n_full = N // (nv * VW) * (nv * VW)
    n_vec = N // VW * VW              # columns covered by whole vectors

    def b_row(k: Any) -> Any:
        return ctx.load(b_rows, k, ctx.i64) if b_rows is not None else ctx.mul(k, ldb)

    def a_at(m: Any, k: Any) -> Any:
        if a_tables is not None:
            return ctx.load(pa, ctx.add(a_off, ctx.load(a_tables[0], m, ctx.i64),
                                        ctx.load(a_tables[1], k, ctx.i64)))
        return ctx.load(pa, ctx.add(a_off, ctx.mul(m, lda), ctx.mul(k, a_col_stride)))

    def tile(m0: Any, rows: int, n0: Any, vecs: int) -> None:
        init = []
        for i in range(rows):
            for j in range(vecs):
                acc = vec.zero
                if row_bias is not None:
                    acc = vec.splat(ctx.load(row_bias, ctx.add(m0, i)))
                if col_bias is not None:
                    cb = vec.load(col_bias, ctx.add(n0, j * VW))
                    acc = cb if row_bias is None else b.fadd(acc, cb)
                init.append(acc)

        def body(k: Any, accs: list[Any]) -> list[Any]:
            bk = b_row(k)
            bv = [vec.load(pb, ctx.add(b_off, bk, n0, j * VW)) for j in range(vecs)]
            out = []
            for i in range(rows):
                av = vec.splat(a_at(ctx.add(m0, i), k))
                for j in range(vecs):
                    out.append(vec.fma(accs[i * vecs + j], av, bv[j]))
            return out

        accs = carried_loop(ctx, K, init, body)
        if epilogue is not None:
            accs = [epilogue(v) for v in accs]
        for i in range(rows):
            for j in range(vecs):
                vec.store(accs[i * vecs + j], pc,
                          ctx.add(c_off, ctx.mul(ctx.add(m0, i), ldc), n0, j * VW))

    def scalar_cols(m0: Any, rows: int, n_start: int) -> None:
        if n_start >= N:
            return
        with ctx.loop(N, start=n_start, name="nt") as n:
            for i in range(rows):
                m = ctx.add(m0, i)
                init = [ctx.cf(0.0)]

                def body(k: Any, accs: list[Any], m: Any = m, n: Any = n) -> list[Any]:
                    bv = ctx.load(pb, ctx.add(b_off, b_row(k), n))
                    return [b.fadd(accs[0], b.fmul(a_at(m, k), bv, flags=("contract",)),
                                   flags=("contract",))]
                acc = carried_loop(ctx, K, init, body, name="ks")[0]
                if row_bias is not None:
                    acc = b.fadd(acc, ctx.load(row_bias, m))
                if col_bias is not None:
                    acc = b.fadd(acc, ctx.load(col_bias, n))
                if epilogue is not None:
                    acc = epilogue(acc)
                ctx.store(acc, pc, ctx.add(c_off, ctx.mul(m, ldc), n))

    def row_block(m0: Any, rows: int) -> None:
        if n_full:
            with ctx.loop(n_full, step=nv * VW, name="n0") as n0:
                tile(m0, rows, n0, nv)
        for nn in range(n_full, n_vec, VW):
            tile(m0, rows, ctx.ci(nn), 1)
        if N > n_vec and N >= VW:
            # the last partial vector: one more tile ending at N, overlapping columns already
            # written (recomputed with the same sums in the same order, so the same values)
            tile(m0, rows, ctx.ci(N - VW), 1)
        else:
            scalar_cols(m0, rows, n_vec)

    row_tiles(ctx, M, mr, row_block)


MATVEC_ACCS = 24      # accumulator registers a matrix-vector product may use (of 32 zmm / 16 ymm)
MATVEC_UNROLL = 320   # FMAs up to which the k loop is written out in full


def _matvec(ctx: KernelCtx, N: int, K: int, vec: Vec, VW: int, pa: Any, a_off: Any,  # noqa: N803
            a_stride: int, pb: Any, b_off: Any, ldb: int, pc: Any, c_off: Any,
            col_bias: Optional[Any]) -> None:
    """c[n] = sum_k a[k] B[k, n] (+ col_bias[n]): one row, every output vector (the last one
    overlapping, ending at N) accumulated in the same k loop, and the k range split into S
    interleaved partial sums added at the end, so S x vectors FMA chains run side by side and
    the chain a recurrent step waits on is K / S deep instead of K (the GRU's R h is latency
    bound). Small products are written out in full (static offsets, no loop)."""
    b = ctx.b
    starts = list(range(0, N // VW * VW, VW))
    if N % VW:
        starts.append(N - VW)
    nvec = len(starts)
    S = max(1, min(4, MATVEC_ACCS // max(nvec, 1), K // 4)) if nvec <= MATVEC_ACCS else 1  # noqa: N806
    if nvec > MATVEC_ACCS:  # a very wide row: vectors in groups, each with its own k loop
        for g0 in range(0, nvec, MATVEC_ACCS):
            part = starts[g0:g0 + MATVEC_ACCS]
            _matvec_group(ctx, part, K, 1, vec, pa, a_off, a_stride, pb, b_off, ldb, pc, c_off,
                          col_bias)
        return
    _matvec_group(ctx, starts, K, S, vec, pa, a_off, a_stride, pb, b_off, ldb, pc, c_off,
                  col_bias)
    del b


def matvec_regs(ctx: KernelCtx, starts: list[int], K: int, vec: Vec, pa: Any, a_off: Any,  # noqa: N803
                pb: Any, ldb: int, col_bias: Optional[Any]) -> list[Any]:
    """The vectors c[n0 : n0 + width] (+ col_bias), n0 in starts, of c[n] = sum_k a[k] B[k, n],
    returned in registers instead of stored: a recurrent step feeds them straight to its gate
    math (a store and reload of a vector that straddles two earlier stores cannot be forwarded
    and stalls the step). Up to 4 interleaved partial sums, as _matvec."""
    S = max(1, min(4, MATVEC_ACCS // max(len(starts), 1), K // 4))  # noqa: N806
    out: list[Any] = []
    _matvec_group(ctx, starts, K, S, vec, pa, a_off, 1, pb, ctx.ci(0), ldb, None, None,
                  col_bias, out)
    return out


def _matvec_group(ctx: KernelCtx, starts: list[int], K: int, S: int, vec: Vec, pa: Any,  # noqa: N803
                  a_off: Any, a_stride: int, pb: Any, b_off: Any, ldb: int, pc: Any, c_off: Any,
                  col_bias: Optional[Any], out: Optional[list[Any]] = None) -> None:
    b = ctx.b
    nvec = len(starts)
    accs = []
    for s_ in range(S):
        for n0 in starts:
            accs.append(vec.load(col_bias, n0) if s_ == 0 and col_bias is not None else vec.zero)

    def step(k: Any, accs: list[Any], s_: int) -> list[Any]:
        av = vec.splat(ctx.load(pa, ctx.add(a_off, ctx.mul(k, a_stride))))
        out = list(accs)
        for j, n0 in enumerate(starts):
            bv = vec.load(pb, ctx.add(b_off, ctx.mul(k, ldb), n0))
            out[s_ * nvec + j] = vec.fma(accs[s_ * nvec + j], av, bv)
        return out

    k_main = K // S * S
    if K * nvec <= MATVEC_UNROLL:
        for k in range(K):
            accs = step(ctx.ci(k), accs, k % S if k < k_main else 0)
    else:
        def body(kk: Any, a: list[Any]) -> list[Any]:
            base = ctx.mul(kk, S)
            for s_ in range(S):
                a = step(b.add(base, ctx.ci(s_), flags=["nsw"]), a, s_)
            return a
        accs = carried_loop(ctx, K // S, accs, body, name="kv")
        for k in range(k_main, K):
            accs = step(ctx.ci(k), accs, 0)
    for j, n0 in enumerate(starts):
        # the partial sums added pairwise (a tree: log2(S) adds deep, not S - 1)
        parts = [accs[s_ * nvec + j] for s_ in range(S)]
        while len(parts) > 1:
            parts = [b.fadd(parts[i], parts[i + 1], flags=("contract",)) if i + 1 < len(parts)
                     else parts[i] for i in range(0, len(parts), 2)]
        if out is not None:
            out.append(parts[0])
        else:
            vec.store(parts[0], pc, ctx.add(c_off, n0))


def depthwise_nhwc(ctx: KernelCtx, g: dict[str, Any], xT: Any, wT: Any, bias: Any,
                   outT: Any) -> None:
    """outT[oy, ox, c] = bias[c] + sum_{ky,kx} wT[ky*KW + kx, c] * xT[oy*sy + ky*dy, ox*sx + kx*dx, c]

    xT is the zero-padded channels-last input [Hp, Wp, C] (so no tap needs a bounds check), outT
    channels-last [OH, OW, C]. Vectors over channels; for each vector of channels the KH*KW tap
    weights are loaded once and stay in registers while the pixel loops run, and the taps are
    unrolled (their offsets are compile-time constants). A channel count that is not a multiple of
    the vector width gets one more vector ending at C (overlapping channels already written, with
    the same sums in the same order); fewer channels than one vector run as scalars."""
    C, OH, OW, KH, KW = g["C"], g["OH"], g["OW"], g["KH"], g["KW"]
    Wp, sy, sx, dy, dx = g["Wp"], g["sy"], g["sx"], g["dy"], g["dx"]
    widest = int(getattr(ctx.cg, "vector_width", VW))
    VW_ = widest if C % widest == 0 else vector_width(ctx, C)  # noqa: N806
    b = ctx.b
    offs = [(ky * dy * Wp + kx * dx) * C for ky in range(KH) for kx in range(KW)]

    def pixels(c0: Any, load: Callable[[Any, Any], Any], store: Callable[[Any, Any, Any], None],
               fma: Callable[[Any, Any, Any], Any]) -> None:
        wv = [load(wT, ctx.add(c0, t * C)) for t in range(len(offs))]
        bv = load(bias, c0)
        with ctx.loop(OH, name="oy") as oy:
            row = ctx.mul(oy, sy * Wp * C)
            orow = ctx.mul(oy, OW * C)
            with ctx.loop(OW, name="ox") as ox:
                base = ctx.add(row, ctx.mul(ox, sx * C), c0)
                acc = bv
                for t, off in enumerate(offs):
                    acc = fma(acc, load(xT, ctx.add(base, off)), wv[t])
                store(acc, outT, ctx.add(orow, ctx.mul(ox, C), c0))

    if C >= VW_:
        vec = Vec(ctx, VW_)
        c_vec = C // VW_ * VW_
        with ctx.loop(c_vec, step=VW_, name="c0") as c0:
            pixels(c0, vec.load, vec.store, vec.fma)
        if C - c_vec:
            pixels(ctx.ci(C - VW_), vec.load, vec.store, vec.fma)
    else:
        def sfma(acc: Any, x: Any, w: Any) -> Any:
            return b.fadd(acc, b.fmul(x, w, flags=("contract",)), flags=("contract",))
        with ctx.loop(C, name="cs") as c:
            pixels(c, ctx.load, lambda v, p_, i: ctx.store(v, p_, i), sfma)
