"""The sensor path's code generator: a static Graph -> one LLVM IR module built with llvmlite.

The module exports one function per model,

    void <symbol>(void *const *inputs, void *const *outputs, void *workspace);

and one constant `<symbol>_workspace_bytes` (u64). `inputs`/`outputs` are arrays of pointers to
contiguous tensors in the graph's order; the workspace (64-byte aligned, that many bytes) holds every
intermediate tensor, placed by a liveness-based first-fit planner so buffers are reused. Weights are
module constants, so the object file is self-contained (the AOT library needs nothing else).

Each node becomes one internal function whose pointer parameters are `noalias` (the planner never
lets a node's output overlap its inputs), with loops whose trip counts are the static shapes: LLVM
then vectorises them for the target's features. Reductions carry `reassoc contract` fast-math flags
(so LLVM may reorder a sum: results differ from onnxruntime by float rounding only); no `nnan` /
`ninf`, so NaN and infinity propagate as the ONNX semantics say.

Alias ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) emit no code: their output is their
input's storage with another shape. The kernels themselves live in ops.py.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from .graph import Graph, Node
from .optimize import ALIAS_OPS

ALIGN = 64
ENTRY_VERSION = 1  # bump when the entry signature or workspace contract changes

_NP_TO_KIND = {np.dtype(np.float32): "f32", np.dtype(np.int8): "i8", np.dtype(np.uint8): "u8",
               np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}


@dataclass
class Storage:
    kind: str        # "input" | "output" | "arena" | "const"
    index: int = 0   # input/output position, or arena byte offset
    const: Optional[np.ndarray] = None


@dataclass
class ModelSignature:
    symbol: str
    inputs: list[tuple[str, tuple[int, ...], str]]
    outputs: list[tuple[str, tuple[int, ...], str]]
    workspace_bytes: int
    node_count: int = 0
    ops: dict[str, int] = field(default_factory=dict)


def _nbytes(shape: Sequence[int], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class Codegen:
    """Lowers a Graph into an llvmlite ir.Module (see the file banner for the contract)."""

    def __init__(self, g: Graph, symbol: str, int8: bool = False, vector_width: int = 8,
                 int8_dot: str = "generic") -> None:
        from llvmlite import ir
        self.ir = ir
        self.vector_width = vector_width
        # "vnni512" on an AVX-512 VNNI target, "sdot" on aarch64+dotprod (int8_microkernels.py)
        self.int8_dot = int8_dot
        self.g = g
        self.symbol = symbol
        self.int8 = int8
        self.module = ir.Module(name=symbol)
        self.f32 = ir.FloatType()
        self.i64 = ir.IntType(64)
        self.i32 = ir.IntType(32)
        self.i8 = ir.IntType(8)
        self.ptr = ir.PointerType()
        self._globals: dict[int, Any] = {}
        self._const_arrays: list[np.ndarray] = []
        self.storage: dict[str, Storage] = {}
        self.scratch: dict[int, tuple[int, int]] = {}  # node index -> (arena offset, bytes)
        self.workspace_bytes = 0

    # -- types ------------------------------------------------------------------------------
    def ir_type(self, dtype: np.dtype) -> Any:
        kind = _NP_TO_KIND.get(np.dtype(dtype))
        if kind is None:
            raise UnsupportedModelError(f"tensor element type {np.dtype(dtype)} is not supported "
                                        f"by the sensor path")
        return {"f32": self.f32, "i8": self.i8, "u8": self.i8, "i32": self.i32,
                "i64": self.i64}[kind]

    # -- constants ----------------------------------------------------------------------------
    def global_const(self, arr: np.ndarray, hint: str = "w") -> Any:
        """A module constant holding arr's bytes (64-byte aligned); returns its pointer."""
        arr = np.ascontiguousarray(arr)
        key = id(arr)
        if key in self._globals:
            return self._globals[key]
        ir = self.ir
        data = bytearray(arr.tobytes()) or bytearray(b"\0")
        ty = ir.ArrayType(self.i8, len(data))
        safe = "".join(c if c.isalnum() else "_" for c in hint)[:40]
        gv = ir.GlobalVariable(self.module, ty, name=f"c{len(self._globals)}_{safe}")
        gv.linkage = "internal"
        gv.global_constant = True
        gv.align = ALIGN
        gv.initializer = ir.Constant(ty, data)
        self._const_arrays.append(arr)  # keep id() unique while building
        self._globals[key] = gv
        return gv

    # -- storage planning -------------------------------------------------------------------
    def plan(self, scratch_bytes: Callable[[Node], int]) -> None:
        g = self.g
        alias_root: dict[str, str] = {}

        def root(t: str) -> str:
            while t in alias_root:
                t = alias_root[t]
            return t

        for n in g.nodes:
            if n.op in ALIAS_OPS:
                alias_root[n.outputs[0]] = n.inputs[0]
        for i, t in enumerate(g.inputs):
            self.storage[t] = Storage("input", i)
        for t, arr in g.consts.items():
            self.storage[t] = Storage("const", const=arr)
        # graph outputs a kernel writes directly (first occurrence only)
        direct_out: dict[str, int] = {}
        for i, t in enumerate(g.outputs):
            if t in direct_out or t in g.inputs or t in g.consts:
                continue
            producer = next((n for n in g.nodes if t in n.outputs), None)
            if producer is not None and producer.op not in ALIAS_OPS:
                direct_out[t] = i
        last_use: dict[str, int] = {}
        for idx, n in enumerate(g.nodes):
            for t in list(n.inputs) + list(n.attrs.get("epilogue_inputs", [])):
                if t:
                    last_use[root(t)] = idx
        for t in g.outputs:
            last_use[root(t)] = len(g.nodes)
        free: list[tuple[int, int]] = []  # (offset, size) holes
        live: dict[str, tuple[int, int, int]] = {}  # root -> (offset, size, last_use)
        top = 0

        def alloc(size: int) -> int:
            nonlocal top
            size = (size + ALIGN - 1) // ALIGN * ALIGN
            for k, (off, sz) in enumerate(sorted(free)):
                if sz >= size:
                    free.remove((off, sz))
                    if sz > size:
                        free.append((off + size, sz - size))
                    return off
            off = top
            top += size
            return off

        def release(off: int, size: int) -> None:
            size = (size + ALIGN - 1) // ALIGN * ALIGN
            free.append((off, size))
            # merge neighbours so later large tensors fit
            free.sort()
            merged: list[tuple[int, int]] = []
            for o, s in free:
                if merged and merged[-1][0] + merged[-1][1] == o:
                    merged[-1] = (merged[-1][0], merged[-1][1] + s)
                else:
                    merged.append((o, s))
            free[:] = merged

        for idx, n in enumerate(g.nodes):
            if n.op in ALIAS_OPS:
                continue
            for t in n.outputs:
                if not t:
                    continue
                if t in direct_out:
                    self.storage[t] = Storage("output", direct_out[t])
                    continue
                size = _nbytes(g.shapes[t], g.dtypes.get(t, np.float32))
                off = alloc(size)
                self.storage[t] = Storage("arena", off)
                live[t] = (off, size, last_use.get(t, idx))
            sb = scratch_bytes(n)
            if sb:
                off = alloc(sb)
                self.scratch[idx] = (off, sb)
                release(off, sb)
            # release what dies here (after the node: its inputs stay intact while it runs)
            for t, (off, size, lu) in list(live.items()):
                if lu <= idx:
                    release(off, size)
                    del live[t]
        for n in g.nodes:
            if n.op in ALIAS_OPS:
                self.storage[n.outputs[0]] = self.storage[root(n.inputs[0])]
        self.workspace_bytes = max(top, ALIGN)

    # -- IR helpers used by the kernels -------------------------------------------------------
    def const_f(self, v: float) -> Any:
        return self.ir.Constant(self.f32, float(v))

    def const_i(self, v: int) -> Any:
        return self.ir.Constant(self.i64, int(v))


@contextlib.contextmanager
def loop(b: Any, n: Any, start: Any = 0, step: int = 1, name: str = "i") -> Iterator[Any]:
    """for (i = start; i < n; i += step) — i64 induction, trip count n (int or i64 value)."""
    from llvmlite import ir
    i64 = ir.IntType(64)
    if isinstance(n, int):
        n = ir.Constant(i64, n)
    if isinstance(start, int):
        start = ir.Constant(i64, start)
    fn = b.function
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    body = fn.append_basic_block(f"{name}.body")
    end = fn.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(i64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, n), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, ir.Constant(i64, step), flags=["nsw"])
    i.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(end)


@contextlib.contextmanager
def if_then(b: Any, cond: Any) -> Iterator[None]:
    fn = b.function
    then = fn.append_basic_block("then")
    end = fn.append_basic_block("endif")
    b.cbranch(cond, then, end)
    b.position_at_end(then)
    yield
    b.branch(end)
    b.position_at_end(end)


REASSOC = ("reassoc", "contract", "nsz")


class KernelCtx:
    """What a kernel in ops.py sees: a builder inside the node's own function, the pointers of the
    tensors it reads and writes, shapes, constants, and the fused epilogue."""

    def __init__(self, cg: Codegen, node: Node, fn: Any, b: Any, ptrs: dict[str, Any],
                 scratch: Optional[Any]) -> None:
        self.cg, self.node, self.fn, self.b = cg, node, fn, b
        self._ptrs = ptrs
        self.scratch_ptr = scratch
        self.f32, self.i64, self.i32, self.i8 = cg.f32, cg.i64, cg.i32, cg.i8
        self.ir = cg.ir
        prog = node.attrs.get("epilogue", [])
        self.epilogue_program = prog
        self.epilogue_inputs = list(node.attrs.get("epilogue_inputs", []))

    # tensors ---------------------------------------------------------------------------------
    def shape(self, t: str) -> tuple[int, ...]:
        return tuple(self.cg.g.shapes[t])

    def dtype(self, t: str) -> np.dtype:
        return np.dtype(self.cg.g.dtypes.get(t, np.float32))

    def const(self, t: str) -> Optional[np.ndarray]:
        return self.cg.g.consts.get(t) if t else None

    def ptr(self, t: str) -> Any:
        if t in self._ptrs:
            return self._ptrs[t]
        arr = self.cg.g.consts.get(t)
        if arr is None:
            raise KeyError(t)
        return self.cg.global_const(arr, t)

    def array_ptr(self, arr: np.ndarray, hint: str) -> Any:
        """A constant the kernel derived (re-laid-out weights, tables)."""
        return self.cg.global_const(arr, hint)

    def gep(self, p: Any, idx: Any, ty: Any = None) -> Any:
        if isinstance(idx, int):
            idx = self.ir.Constant(self.i64, idx)
        return self.b.gep(p, [idx], inbounds=True, source_etype=ty or self.f32)

    def load(self, p: Any, idx: Any, ty: Any = None) -> Any:
        ty = ty or self.f32
        return self.b.load(self.gep(p, idx, ty), typ=ty)

    def store(self, v: Any, p: Any, idx: Any) -> None:
        self.b.store(v, self.gep(p, idx, v.type))

    def ci(self, v: int) -> Any:
        return self.ir.Constant(self.i64, int(v))

    def cf(self, v: float) -> Any:
        return self.ir.Constant(self.f32, float(v))

    def add(self, *vals: Any) -> Any:
        acc = None
        for v in vals:
            if isinstance(v, int):
                if v == 0:
                    continue
                v = self.ci(v)
            acc = v if acc is None else self.b.add(acc, v, flags=["nsw"])
        return acc if acc is not None else self.ci(0)

    def mul(self, a: Any, k: int) -> Any:
        if k == 0:
            return self.ci(0)
        if k == 1:
            return a
        return self.b.mul(a, self.ci(k), flags=["nsw"])

    def fadd(self, a: Any, b: Any) -> Any:
        return self.b.fadd(a, b, flags=REASSOC)

    def fmul(self, a: Any, b: Any) -> Any:
        return self.b.fmul(a, b, flags=("contract",))

    def fma(self, acc: Any, a: Any, b: Any) -> Any:
        """acc + a*b, contractable to one FMA, reassociable (a reduction step)."""
        return self.b.fadd(acc, self.b.fmul(a, b, flags=REASSOC), flags=REASSOC)

    def loop(self, n: Any, start: Any = 0, step: int = 1, name: str = "i") -> Any:
        return loop(self.b, n, start, step, name)

    def alloca(self) -> Any:
        """An f32 stack slot in the entry block (mem2reg turns it into a register)."""
        with self.b.goto_entry_block():
            return self.b.alloca(self.f32)

    def if_then(self, cond: Any) -> Any:
        return if_then(self.b, cond)

    def memset0(self, p: Any, nbytes: int) -> None:
        ir = self.ir
        fn = self.cg.module.declare_intrinsic("llvm.memset", [self.cg.ptr, self.i64])
        self.b.call(fn, [p, ir.Constant(self.i8, 0), self.ci(nbytes), ir.Constant(ir.IntType(1), 0)])

    def memcpy(self, dst: Any, src: Any, nbytes: Any) -> None:
        ir = self.ir
        if isinstance(nbytes, int):
            nbytes = self.ci(nbytes)
        fn = self.cg.module.declare_intrinsic("llvm.memcpy", [self.cg.ptr, self.cg.ptr, self.i64])
        self.b.call(fn, [dst, src, nbytes, ir.Constant(ir.IntType(1), 0)])

    # epilogue ------------------------------------------------------------------------------
    @property
    def has_epilogue(self) -> bool:
        return bool(self.epilogue_program)

    def epilogue(self, v: Any, coords: Sequence[Any]) -> Any:
        """Apply the fused elementwise tail to the producer's value at output coords."""
        if not self.epilogue_program:
            return v
        from .ops import eval_program
        out_shape = self.shape(self.node.outputs[0])
        operands = [v]
        for t in self.epilogue_inputs:
            operands.append(self.load_broadcast(t, out_shape, coords))
        return eval_program(self, self.epilogue_program, operands)

    def load_broadcast(self, t: str, out_shape: Sequence[int], coords: Sequence[Any]) -> Any:
        shp = self.shape(t)
        p = self.ptr(t)
        if int(np.prod(shp)) == 1:
            arr = self.const(t)
            if arr is not None:
                return self.cf(float(arr.reshape(-1)[0]))
            return self.load(p, 0)
        strides = broadcast_strides(shp, out_shape)
        off = self.add(*[self.mul(c, s) for c, s in zip(coords, strides) if s])
        return self.load(p, off)


def broadcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of a tensor of `shape` read at coords of `out_shape` (0 on broadcast dims)."""
    shape = list(shape)
    if len(shape) > len(out_shape):
        raise ModelFormatError(f"shape {tuple(shape)} does not broadcast to {tuple(out_shape)}")
    shape = [1] * (len(out_shape) - len(shape)) + shape
    strides = [0] * len(out_shape)
    s = 1
    for d in range(len(out_shape) - 1, -1, -1):
        if shape[d] == out_shape[d] and shape[d] != 1:
            strides[d] = s
        elif shape[d] != 1:
            raise ModelFormatError(f"shape {tuple(shape)} does not broadcast to "
                                   f"{tuple(out_shape)}")
        s *= shape[d]
    return strides


def build_module(g: Graph, symbol: str, int8: bool = False, vector_width: int = 8,
                 int8_dot: str = "generic") -> tuple[str, ModelSignature]:
    """Lower the whole graph; returns (LLVM IR text, signature). vector_width: floats per vector
    in the tiled kernels (8, or 16 for an AVX-512 target); int8_dot: the int8 GEMM's
    multiply-add ("vnni512" on an AVX-512 VNNI target, "sdot" on aarch64 with dotprod, else
    "generic")."""
    from . import ops
    cg = Codegen(g, symbol, int8=int8, vector_width=vector_width, int8_dot=int8_dot)
    for n in g.nodes:
        if n.op not in ALIAS_OPS and ops.kernel_for(n) is None:
            raise UnsupportedModelError(
                f"unsupported op {n.op!r}{' (domain ' + n.domain + ')' if n.domain else ''} at "
                f"{n.where()}; the sensor path cannot compile it: use "
                f"compile(..., fallback='onnxruntime') to run the model in onnxruntime")
    for t in list(g.inputs) + list(g.outputs):
        cg.ir_type(g.dtypes.get(t, np.float32))
    ops.choose_layouts(g)  # before planning: a layout changes some kernels' scratch
    from .quant import choose_layouts as choose_int8_layouts
    choose_int8_layouts(g)
    cg.plan(ops.scratch_bytes_for(g))
    ir = cg.ir
    entry_ty = ir.FunctionType(ir.VoidType(), [cg.ptr, cg.ptr, cg.ptr])
    entry = ir.Function(cg.module, entry_ty, name=symbol)
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    in_arr, out_arr, ws = entry.args
    in_ptrs = [b.load(b.gep(in_arr, [cg.const_i(i)], source_etype=cg.ptr), typ=cg.ptr)
               for i in range(len(g.inputs))]
    out_ptrs = [b.load(b.gep(out_arr, [cg.const_i(i)], source_etype=cg.ptr), typ=cg.ptr)
                for i in range(len(g.outputs))]

    def where(t: str) -> Optional[Any]:
        s = cg.storage[t]
        if s.kind == "input":
            return in_ptrs[s.index]
        if s.kind == "output":
            return out_ptrs[s.index]
        if s.kind == "arena":
            return b.gep(ws, [cg.const_i(s.index)], inbounds=True, source_etype=cg.i8)
        return None  # const: the kernel reaches it as a module global

    op_counts: dict[str, int] = {}
    for idx, n in enumerate(g.nodes):
        op_counts[n.op] = op_counts.get(n.op, 0) + 1
        if n.op in ALIAS_OPS:
            continue
        tensors: list[str] = []
        for t in list(n.outputs) + list(n.inputs) + list(n.attrs.get("epilogue_inputs", [])):
            if t and t not in tensors and cg.storage[t].kind != "const":
                tensors.append(t)
        params = [cg.ptr] * (len(tensors) + (1 if idx in cg.scratch else 0))
        fn = ir.Function(cg.module, ir.FunctionType(ir.VoidType(), params),
                         name=f"{symbol}.n{idx}.{n.op}")
        fn.linkage = "internal"
        for a in fn.args:
            a.add_attribute("noalias")
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        ptrs = dict(zip(tensors, fn.args))
        scratch = fn.args[len(tensors)] if idx in cg.scratch else None
        ctx = KernelCtx(cg, n, fn, fb, ptrs, scratch)
        ops.kernel_for(n)(ctx)  # type: ignore[misc]
        ctx.b.ret_void()
        args = [where(t) for t in tensors]
        if idx in cg.scratch:
            args.append(b.gep(ws, [cg.const_i(cg.scratch[idx][0])], inbounds=True,
                              source_etype=cg.i8))
        b.call(fn, args)
    # graph outputs not written in place: copy
    for i, t in enumerate(g.outputs):
        s = cg.storage[t]
        if s.kind == "output" and s.index == i:
            continue
        nbytes = _nbytes(g.shapes[t], g.dtypes.get(t, np.float32))
        src = where(t) if s.kind != "const" else cg.global_const(s.const, t)  # type: ignore[arg-type]
        fn = cg.module.declare_intrinsic("llvm.memcpy", [cg.ptr, cg.ptr, cg.i64])
        b.call(fn, [out_ptrs[i], src, cg.const_i(nbytes), ir.Constant(ir.IntType(1), 0)])
    b.ret_void()
    wsb = ir.GlobalVariable(cg.module, cg.i64, name=f"{symbol}_workspace_bytes")
    wsb.global_constant = True
    wsb.initializer = cg.const_i(cg.workspace_bytes)
    sig = ModelSignature(
        symbol=symbol,
        inputs=[(t, tuple(g.shapes[t]), _NP_TO_KIND[np.dtype(g.dtypes.get(t, np.float32))])
                for t in g.inputs],
        outputs=[(t, tuple(g.shapes[t]), _NP_TO_KIND[np.dtype(g.dtypes.get(t, np.float32))])
                 for t in g.outputs],
        workspace_bytes=cg.workspace_bytes, node_count=len(g.nodes), ops=op_counts)
    return str(cg.module), sig
