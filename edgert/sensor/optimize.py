"""Graph rewrites of the sensor path, run between the reader (graph.py) and the code generator.

  - Identity / Dropout (inference) disappear;
  - Clip's min/max inputs become attributes; a standalone BatchNormalization becomes a per-channel
    Mul + Add (then fusable);
  - BatchNormalization after a Conv or Gemm with constant weights is folded into them;
  - elementwise chains are fused: a run of elementwise nodes becomes one `Elementwise` node that
    evaluates the whole expression per element, and an elementwise tail after Conv / Gemm /
    MatMul / pooling becomes that producer's `epilogue`, applied while the producer's output is
    still in registers or L1. Fusion needs the producer's output to have no other reader and the
    extra operands to be known before the producer runs.

Every rewrite keeps the graph's numerical meaning up to float rounding.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ModelFormatError
from .graph import Graph, Node

# Elementwise ops the code generator evaluates per element (ops.py has their formulas).
UNARY = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "HardSwish", "HardSigmoid", "Clip",
         "Exp", "Log", "Sqrt", "Neg", "Abs", "Erf", "Reciprocal", "Softplus", "Elu", "Selu",
         "Floor", "Ceil", "Sign", "Sin", "Cos"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu"}
ELEMENTWISE = UNARY | BINARY
# Producers whose kernels apply an epilogue per element (ops.py calls ctx.epilogue).
EPILOGUE_PRODUCERS = {"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                      "GlobalMaxPool", "Elementwise", "QLinearConv", "QLinearMatMul"}
ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


def optimize(g: Graph, fuse: bool = True) -> Graph:
    _drop_identities(g)
    _normalise(g)
    _fold_batchnorm(g)
    _to_elementwise(g)
    if fuse:
        _fuse_elementwise(g)
    _drop_dead(g)
    return g


def _rename_input(g: Graph, old: str, new: str) -> None:
    for n in g.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]


def _drop_identities(g: Graph) -> None:
    kept = []
    for n in g.nodes:
        if n.op in ("Identity", "Dropout") and n.outputs[0] not in g.outputs:
            if n.op == "Dropout" and len(n.outputs) > 1 and n.outputs[1]:
                kept.append(n)  # the mask is read: keep it (refused later as unsupported)
                continue
            _rename_input(g, n.outputs[0], n.inputs[0])
            continue
        if n.op == "Dropout":
            n.op, n.inputs, n.outputs = "Identity", n.inputs[:1], n.outputs[:1]
        kept.append(n)
    g.nodes = kept


def _normalise(g: Graph) -> None:
    """Constant operands into attributes; BatchNormalization into Mul + Add."""
    out: list[Node] = []
    for n in g.nodes:
        if n.op == "Clip" and len(n.inputs) > 1:
            for i, key in ((1, "min"), (2, "max")):
                if len(n.inputs) > i and n.inputs[i]:
                    if n.inputs[i] not in g.consts:
                        from ..errors import UnsupportedModelError
                        raise UnsupportedModelError(f"{n.where()}: a Clip bound that is not a "
                                                    f"constant is not supported")
                    n.attrs[key] = float(g.consts[n.inputs[i]].reshape(-1)[0])
            n.inputs = n.inputs[:1]
        if n.op == "BatchNormalization" and _bn_consts(g, n) is not None \
                and not _bn_folds_into_producer(g, n):
            scale, shift = _bn_consts(g, n)  # type: ignore[misc]
            rank = len(g.shapes[n.inputs[0]])
            shp = (scale.size,) + (1,) * (rank - 2)
            s_name, b_name, mid = n.outputs[0] + ".bn_scale", n.outputs[0] + ".bn_shift", \
                n.outputs[0] + ".bn_mul"
            _add_const(g, s_name, scale.reshape(shp))
            _add_const(g, b_name, shift.reshape(shp))
            g.shapes[mid], g.dtypes[mid] = g.shapes[n.outputs[0]], np.dtype(np.float32)
            out.append(Node("Mul", n.name + ".mul", [n.inputs[0], s_name], [mid], {}))
            out.append(Node("Add", n.name + ".add", [mid, b_name], [n.outputs[0]], {}))
            continue
        out.append(n)
    g.nodes = out


def _add_const(g: Graph, name: str, val: np.ndarray) -> None:
    g.consts[name] = np.ascontiguousarray(val, dtype=np.float32)
    g.shapes[name] = tuple(val.shape)
    g.dtypes[name] = np.dtype(np.float32)


def _bn_consts(g: Graph, n: Node) -> Optional[tuple[np.ndarray, np.ndarray]]:
    if len(n.inputs) < 5 or not all(t in g.consts for t in n.inputs[1:5]):
        return None
    if len([t for t in n.outputs if t]) > 1:
        return None  # training-mode outputs
    gamma, beta, mean, var = (g.consts[t].astype(np.float64).reshape(-1) for t in n.inputs[1:5])
    c = g.shapes[n.inputs[0]][1] if len(g.shapes[n.inputs[0]]) > 1 else 1
    if not (gamma.size == beta.size == mean.size == var.size == c):
        raise ModelFormatError(f"{n.where()}: scale/B/mean/var must have {c} elements (the "
                               f"input's channels)")
    eps = float(n.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    return scale.astype(np.float32), shift.astype(np.float32)


def _single_reader(g: Graph, t: str) -> Optional[Node]:
    readers = g.consumers().get(t, [])
    if len(readers) != 1 or t in g.outputs:
        return None
    return readers[0]


def _producer_of(g: Graph) -> dict[str, Node]:
    return {t: n for n in g.nodes for t in n.outputs if t}


def _bn_folds_into_producer(g: Graph, bn: Node) -> bool:
    p = _producer_of(g).get(bn.inputs[0])
    if p is None or _single_reader(g, bn.inputs[0]) is not bn:
        return False
    if p.op == "Conv" and p.inputs[1] in g.consts and (len(p.inputs) < 3 or not p.inputs[2]
                                                       or p.inputs[2] in g.consts):
        return True
    if p.op == "Gemm" and p.inputs[1] in g.consts and (len(p.inputs) < 3 or not p.inputs[2]
                                                       or p.inputs[2] in g.consts):
        return len(g.shapes[bn.inputs[0]]) == 2
    return False


def _fold_batchnorm(g: Graph) -> None:
    prod = _producer_of(g)
    kept = []
    for n in g.nodes:
        if n.op != "BatchNormalization":
            kept.append(n)
            continue
        consts = _bn_consts(g, n)
        if consts is None:
            kept.append(n)  # non-constant statistics: refused later with the node's name
            continue
        scale, shift = consts
        p = prod[n.inputs[0]]
        w = g.consts[p.inputs[1]].astype(np.float32)
        bias_name = p.inputs[2] if len(p.inputs) > 2 and p.inputs[2] else None
        if p.op == "Conv":
            cout = w.shape[0]
            b = g.consts[bias_name].astype(np.float32).reshape(-1) if bias_name else \
                np.zeros(cout, np.float32)
            w_new = w * scale.reshape((cout,) + (1,) * (w.ndim - 1))
            b_new = b * scale + shift
        else:  # Gemm: y = alpha*A*B' + beta*C
            alpha, beta = float(p.attrs.get("alpha", 1.0)), float(p.attrs.get("beta", 1.0))
            n_out = scale.size
            w_new = w * (scale.reshape(-1, 1) if p.attrs.get("transB", 0) else scale.reshape(1, -1))
            c = g.consts[bias_name].astype(np.float32) if bias_name else np.zeros(1, np.float32)
            c = np.broadcast_to(c * beta, (g.shapes[p.outputs[0]][0], n_out)) if c.ndim == 2 \
                else np.broadcast_to((c * beta).reshape(-1), (n_out,))
            b_new = np.ascontiguousarray(c * scale + shift)
            w_new = w_new * alpha
            p.attrs["alpha"], p.attrs["beta"] = 1.0, 1.0
        wn, bn_ = p.outputs[0] + ".w_bn", p.outputs[0] + ".b_bn"
        _add_const(g, wn, w_new)
        _add_const(g, bn_, b_new)
        p.inputs = [p.inputs[0], wn, bn_]
        p.outputs = [n.outputs[0]]
    g.nodes = kept


def _to_elementwise(g: Graph) -> None:
    """Every float elementwise node becomes an `Elementwise` node with a one-step program."""
    for n in g.nodes:
        if n.op in ELEMENTWISE and n.domain in ("", "ai.onnx") and _float_op(g, n):
            ins = [t for t in n.inputs if t]
            n.attrs = {"program": [(n.op, dict(n.attrs), list(range(len(ins))))],
                       "n_inputs": len(ins)}
            n.inputs = ins
            n.op = "Elementwise"


def _fuse_elementwise(g: Graph) -> None:
    """Fold a consumer Elementwise into its producer (another Elementwise, or a kernel with an
    epilogue) while the rules of the file banner allow."""
    changed = True
    while changed:
        changed = False
        order = {id(n): i for i, n in enumerate(g.nodes)}
        prod = _producer_of(g)
        for e in list(g.nodes):
            if e.op != "Elementwise":
                continue
            for src in e.inputs:
                p = prod.get(src)
                if p is None or p.op not in EPILOGUE_PRODUCERS or _single_reader(g, src) is not e:
                    continue
                if g.shapes[e.outputs[0]] != g.shapes[src]:
                    continue  # the elementwise op broadcasts the producer's output up
                others = [t for t in e.inputs if t != src]
                if src in others:
                    continue
                if not all(t in g.consts or t in g.inputs or
                           (t in prod and order[id(prod[t])] < order[id(p)]) for t in others):
                    continue
                if p.op != "Elementwise" and len(others) > 0 and \
                        not all(_broadcasts_to(g.shapes[t], g.shapes[src]) for t in others):
                    continue
                _merge(g, p, e, src)
                changed = True
                break
            if changed:
                break


def _float_op(g: Graph, n: Node) -> bool:
    return all(g.dtypes.get(t, np.dtype(np.float32)) == np.float32 for t in n.inputs if t)


def _broadcasts_to(s: tuple[int, ...], out: tuple[int, ...]) -> bool:
    if len(s) > len(out):
        return False
    return all(a in (1, b) for a, b in zip(s[::-1], out[::-1]))


def _merge(g: Graph, p: Node, e: Node, src: str) -> None:
    """Append e's program to p's: p's own result is value 0 of the epilogue program."""
    if p.op == "Elementwise":
        prog = list(p.attrs["program"])
        base_inputs = list(p.inputs)
        n_vals = p.attrs["n_inputs"] + len(prog)
        acc = n_vals - 1
    else:
        prog = list(p.attrs.get("epilogue", []))
        base_inputs = list(p.attrs.get("epilogue_inputs", []))
        n_vals = 1 + len(base_inputs) + len(prog)
        acc = n_vals - 1
    # e's program refers to e.inputs by index; map each to a value slot of the merged program.
    slot_of: dict[int, int] = {}
    extra_inputs = [t for t in e.inputs if t != src]
    # extra inputs are appended as new input slots; renumber: new input slots go after the
    # existing inputs, so shift every existing step value index by len(extra_inputs).
    shift = len(extra_inputs)
    n_in_old = p.attrs["n_inputs"] if p.op == "Elementwise" else 1 + len(base_inputs)
    def remap_old(v: int) -> int:
        return v if v < n_in_old else v + shift
    prog = [(op, attrs, [remap_old(a) for a in args]) for op, attrs, args in prog]
    acc = remap_old(acc)
    k = 0
    for i, t in enumerate(e.inputs):
        if t == src:
            slot_of[i] = acc
        else:
            slot_of[i] = n_in_old + k
            k += 1
    base = n_in_old + shift + len(prog)
    e_n_in = e.attrs["n_inputs"]
    for j, (op, attrs, args) in enumerate(e.attrs["program"]):
        prog.append((op, attrs, [slot_of[a] if a < e_n_in else base + (a - e_n_in)
                                 for a in args]))
    if p.op == "Elementwise":
        p.inputs = base_inputs + extra_inputs
        p.attrs = {"program": prog, "n_inputs": n_in_old + shift}
    else:
        p.attrs["epilogue"] = prog
        p.attrs["epilogue_inputs"] = base_inputs + extra_inputs
    p.outputs = [e.outputs[0]] + p.outputs[1:]
    g.nodes.remove(e)


def _drop_dead(g: Graph) -> None:
    live = set(g.outputs)
    kept: list[Node] = []
    for n in reversed(g.nodes):
        if any(t in live for t in n.outputs if t):
            kept.append(n)
            live.update(t for t in n.inputs if t)
            if n.op not in EPILOGUE_PRODUCERS:
                continue
            live.update(n.attrs.get("epilogue_inputs", []))
    g.nodes = kept[::-1]
