"""The sensor path's graph reader: an ONNX file -> a static, topologically sorted `Graph`.

What it does, in order, with the `onnx` package doing the ONNX-specific work:
  1. parse the protobuf (bounded size; a truncated or corrupt file is a ModelFormatError);
  2. pin every graph input to a static shape (a symbolic dim must be given by `input_shapes`);
  3. `onnx.checker` (node order = a cycle check, attribute and type rules) and strict
     `onnx.shape_inference` (wrong shapes are refused here, before any code is generated);
  4. constant folding: every node whose inputs are all known (initializers, Constant nodes, the
     Shape of a static tensor) is evaluated once with `onnx.reference.ReferenceEvaluator` and
     becomes an initializer, so the exporters' Shape -> Gather -> Concat -> Reshape chains vanish.

What it assumes: one model = one graph with static shapes; batch 1 is the sensor case but any
static batch works. Nothing here generates code; `optimize.py` rewrites the graph, `codegen.py`
lowers it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from .source import MAX_MODEL_BYTES, ModelSource, read_model_bytes  # noqa: F401 - re-exported

# A sensor model is kilobytes to a few MiB; these bounds (and source.py's MAX_MODEL_BYTES) keep a
# hostile file from costing unbounded memory or time before anything is checked.
MAX_TENSOR_ELEMENTS = 1 << 28       # 1 GiB of f32 in one activation
MAX_TOTAL_ELEMENTS = 1 << 29        # all activations together
MAX_NODES = 100_000
MAX_FOLDED_ELEMENTS = 1 << 24       # constant folding never materialises more than this


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]      # "" = an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any]
    domain: str = ""

    def where(self) -> str:
        return f"node {self.name!r} ({self.op})" if self.name else f"a {self.op} node"


@dataclass
class Graph:
    """A static ONNX graph: every tensor's shape and dtype known, constants as numpy arrays."""
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    consts: dict[str, np.ndarray]
    opset: int
    name: str = "model"
    extra_domains: dict[str, int] = field(default_factory=dict)

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    users.setdefault(t, []).append(n)
        return users

    def is_const(self, name: str) -> bool:
        return name in self.consts


def parse_model(data: bytes) -> Any:
    import onnx
    from google.protobuf.message import DecodeError
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"not a valid ONNX file: the protobuf does not parse ({e}); the "
                               f"file is truncated or not ONNX") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFormatError("the ONNX file has no graph (or an empty one): truncated or not ONNX")
    if len(model.graph.node) > MAX_NODES:
        raise ModelFormatError(f"{len(model.graph.node)} nodes: too many for a sensor model")
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise UnsupportedModelError(f"initializer {init.name!r} keeps its data in an external "
                                        f"file; save the model with the weights inside "
                                        f"(onnx.save(model, path, save_as_external_data=False))")
    return model


def _dim_values(vi: Any) -> list[Union[int, str, None]]:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return []
    dims: list[Union[int, str, None]] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _check_elements(what: str, shape: Sequence[int]) -> None:
    n = 1
    for d in shape:
        if d < 0:
            raise ModelFormatError(f"{what} has a negative dim in {tuple(shape)}")
        n *= d
        if n > MAX_TENSOR_ELEMENTS:
            raise ModelFormatError(f"{what} declares shape {tuple(shape)}: more than "
                                   f"{MAX_TENSOR_ELEMENTS} elements, too large for the sensor "
                                   f"path (a corrupt file or not a sensor model)")


def pin_inputs(model: Any, input_shapes: Optional[Mapping[str, Sequence[int]]]) -> None:
    """Give every graph input a static shape in place; refuse what stays dynamic."""
    import onnx
    inits = {i.name for i in model.graph.initializer}
    given = dict(input_shapes or {})
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedModelError(f"input {vi.name!r} is not a tensor (sequence/map inputs "
                                        f"are not supported by the sensor path)")
        dims = _dim_values(vi)
        if vi.name in given:
            shape = [int(d) for d in given.pop(vi.name)]
            if dims and len(dims) != len(shape):
                raise ModelFormatError(f"input {vi.name!r} has rank {len(dims)}, input_shapes "
                                       f"gives {tuple(shape)}")
            for i, (d, s) in enumerate(zip(dims, shape)):
                if isinstance(d, int) and d != s:
                    raise ModelFormatError(f"input {vi.name!r} dim {i} is {d}, input_shapes "
                                           f"gives {s}")
        else:
            if not vi.type.tensor_type.HasField("shape"):
                raise UnsupportedModelError(f"input {vi.name!r} has no declared shape (dynamic "
                                            f"rank); give it with input_shapes={{{vi.name!r}: "
                                            f"(...)}}")
            bad = [(i, d) for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
            if bad:
                i, d = bad[0]
                raise UnsupportedModelError(
                    f"dynamic shape: input {vi.name!r} dim {i} is {d!r}; the sensor path compiles "
                    f"static shapes only: pass input_shapes={{{vi.name!r}: (...)}} to compile(), "
                    f"or fallback='onnxruntime'")
            shape = [int(d) for d in dims]
        if any(s <= 0 for s in shape):
            raise ModelFormatError(f"input {vi.name!r}: shape {tuple(shape)} has a dim <= 0")
        _check_elements(f"input {vi.name!r}", shape)
        tt = vi.type.tensor_type
        tt.ClearField("shape")
        for s in shape:
            tt.shape.dim.add().dim_value = s
    if given:
        raise ModelFormatError(f"input_shapes names {sorted(given)}, which are not graph inputs "
                               f"(inputs: {[v.name for v in model.graph.input]})")
    _type_shapeless_outputs(model)


def _type_shapeless_outputs(model: Any) -> None:
    """Graph outputs declared without a shape (onnxruntime accepts them, onnx.checker does not):
    take their type from shape inference on a copy where they are intermediate values."""
    import onnx
    import onnx.shape_inference
    missing = [o for o in model.graph.output
               if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape")]
    if not missing:
        return
    tmp = onnx.ModelProto()
    tmp.CopyFrom(model)
    names = {o.name for o in missing}
    kept = [o for o in tmp.graph.output if o.name not in names]
    del tmp.graph.output[:]
    tmp.graph.output.extend(kept)
    try:
        inferred = onnx.shape_inference.infer_shapes(tmp, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFormatError(f"shape inference failed (wrong shapes in the graph): {first}"
                               ) from None
    found = {vi.name: vi for vi in inferred.graph.value_info}
    for o in missing:
        if o.name in found and found[o.name].type.tensor_type.HasField("shape"):
            o.type.CopyFrom(found[o.name].type)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
            out[a.name] = a  # only control flow uses these; refused later by name
        else:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list):
                v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
            elif a.type == onnx.AttributeProto.TENSOR:
                v = onnx.numpy_helper.to_array(v)
            out[a.name] = v
    return out


def _np_dtype(elem_type: int) -> np.dtype:
    import onnx
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        raise UnsupportedModelError(f"tensor element type {elem_type} is not supported") from None


# Ops whose output depends only on their inputs (safe to evaluate once at compile time).
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "If", "Loop", "Scan"}


def read_graph(source: ModelSource, input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
               data: Optional[bytes] = None, keep: frozenset[str] = frozenset()) -> Graph:
    """Parse, check, shape-infer and constant-fold an ONNX model into a static Graph.

    The file is untrusted: whatever the onnx package raises on it (protobuf, checker, inference,
    a bad UTF-8 name, the reference evaluator) becomes a ModelFormatError."""
    from ..errors import EdgertError
    try:
        return _read_graph(source, input_shapes, data, keep)
    except (EdgertError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except MemoryError:
        raise ModelFormatError("the model needs more memory than is available to read it"
                               ) from None
    except Exception as e:  # noqa: BLE001 - see the docstring
        raise ModelFormatError(f"the ONNX file cannot be read: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from None


def _read_graph(source: ModelSource, input_shapes: Optional[Mapping[str, Sequence[int]]],
                data: Optional[bytes], keep: frozenset[str]) -> Graph:
    import onnx
    import onnx.shape_inference
    data = data if data is not None else read_model_bytes(source)
    model = parse_model(data)
    opset = 0
    extra: dict[str, int] = {}
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            opset = int(o.version)
        else:
            extra[o.domain] = int(o.version)
    if opset == 0:
        raise ModelFormatError("the model imports no default-domain opset")
    pin_inputs(model, input_shapes)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFormatError(f"the ONNX graph is malformed: {first}") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFormatError(f"shape inference failed (wrong shapes in the graph): {first}"
                               ) from None
    g = inferred.graph

    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        _check_elements(f"initializer {init.name!r}", list(init.dims))
        try:
            arr = onnx.numpy_helper.to_array(init)
        except Exception as e:  # noqa: BLE001 - a corrupt raw_data length, an unknown type
            raise ModelFormatError(f"initializer {init.name!r} cannot be read: {e}") from None
        consts[init.name] = np.ascontiguousarray(arr)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in consts or not vi.type.HasField("tensor_type"):
            continue
        dims = _dim_values(vi)
        if vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            _check_elements(f"tensor {vi.name!r}", dims)  # type: ignore[arg-type]
            shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
        if vi.type.tensor_type.elem_type:
            dtypes[vi.name] = _np_dtype(vi.type.tensor_type.elem_type)
    for name, arr in consts.items():
        shapes[name] = tuple(arr.shape)
        dtypes[name] = arr.dtype

    inputs = [vi.name for vi in g.input if vi.name not in consts]
    outputs = [vi.name for vi in g.output]
    nodes = [Node(n.op_type, n.name, list(n.input), list(n.output), _attrs(n), n.domain)
             for n in g.node]
    graph = Graph(inputs, outputs, nodes, shapes, dtypes, consts, opset,
                  name=g.name or "model", extra_domains=extra)
    _fold_constants(graph, keep)
    total = 0
    for n in graph.nodes:
        for t in n.outputs:
            if not t:
                continue
            if t not in graph.shapes:
                raise UnsupportedModelError(
                    f"dynamic shape: the shape of {t!r}, output of {n.where()}, is not known at "
                    f"compile time; the sensor path compiles static shapes only "
                    f"(fallback='onnxruntime' runs it)")
            total += int(np.prod(graph.shapes[t], dtype=np.int64))
    if total > MAX_TOTAL_ELEMENTS:
        raise ModelFormatError(f"the graph's activations add up to {total} elements: too large "
                               f"for the sensor path")
    for t in graph.outputs:
        if t not in graph.shapes:
            raise UnsupportedModelError(f"dynamic shape: graph output {t!r} has no static shape")
    return graph


def _fold_constants(graph: Graph, keep: frozenset[str] = frozenset()) -> None:
    """Evaluate every node whose inputs are all known; it becomes an initializer. Ops in `keep`
    stay nodes (quant.prepare still needs to see DequantizeLinear of int8 weights)."""
    kept: list[Node] = []
    for n in graph.nodes:
        if n.op == "Constant":
            val = _constant_value(n)
            graph.consts[n.outputs[0]] = val
            graph.shapes[n.outputs[0]] = tuple(val.shape)
            graph.dtypes[n.outputs[0]] = val.dtype
            continue
        if n.op == "Shape" and n.domain in ("", "ai.onnx") and n.inputs[0] in graph.shapes:
            shp = np.array(graph.shapes[n.inputs[0]], dtype=np.int64)
            start, end = n.attrs.get("start", 0), n.attrs.get("end", None)
            val = shp[start:end] if end is not None else shp[start:]
            _set_const(graph, n.outputs[0], val)
            continue
        if n.op == "Size" and n.inputs[0] in graph.shapes:
            _set_const(graph, n.outputs[0], np.array(np.prod(graph.shapes[n.inputs[0]]),
                                                     dtype=np.int64))
            continue
        ins = [t for t in n.inputs if t]
        foldable = (n.domain in ("", "ai.onnx") and n.op not in _NOT_FOLDABLE
                    and n.op not in keep and ins
                    and all(t in graph.consts for t in ins)
                    and all(graph.shapes.get(t) is not None for t in n.outputs if t)
                    and sum(int(np.prod(graph.shapes[t])) for t in n.outputs if t)
                    <= MAX_FOLDED_ELEMENTS)
        if foldable:
            for t, v in zip(n.outputs, _evaluate(n, graph)):
                if t:
                    _set_const(graph, t, v)
            continue
        kept.append(n)
    graph.nodes = kept
    graph.outputs = list(graph.outputs)


def _set_const(graph: Graph, name: str, val: np.ndarray) -> None:
    val = np.ascontiguousarray(val)
    if name in graph.shapes and tuple(graph.shapes[name]) != tuple(val.shape) and \
            int(np.prod(graph.shapes[name])) == val.size:
        val = val.reshape(graph.shapes[name])  # the reference's Gather keeps a scalar index's dim
    if name in graph.shapes and tuple(graph.shapes[name]) != tuple(val.shape):
        raise ModelFormatError(f"constant folding gave {name!r} shape {val.shape}, shape "
                               f"inference said {graph.shapes[name]}")
    graph.consts[name] = val
    graph.shapes[name] = tuple(val.shape)
    graph.dtypes[name] = val.dtype


def _constant_value(n: Node) -> np.ndarray:
    a = n.attrs
    if "value" in a:
        return np.asarray(a["value"])
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dt)
    raise UnsupportedModelError(f"{n.where()}: this kind of Constant is not supported")


def _evaluate(n: Node, graph: Graph) -> list[np.ndarray]:
    """Run one node on constant inputs with onnx's reference implementation (DequantizeLinear of
    int8 weights in numpy: the reference has no implementation before opset 19)."""
    if n.op == "DequantizeLinear" and len(n.inputs) >= 2:
        return [_dequantize(n, graph)]
    try:
        return _evaluate_reference(n, graph, graph.opset)
    except ModelFormatError as e:
        if "No implementation" not in str(e):
            raise
        return _evaluate_reference(n, graph, max(graph.opset, 21))


def _dequantize(n: Node, graph: Graph) -> np.ndarray:
    x = graph.consts[n.inputs[0]]
    s = graph.consts[n.inputs[1]].astype(np.float32)
    z = graph.consts[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else np.zeros((), x.dtype)
    if n.attrs.get("block_size", 0):
        raise UnsupportedModelError(f"{n.where()}: blocked quantization is not supported")
    shape = [1] * x.ndim
    if s.size > 1:
        axis = int(n.attrs.get("axis", 1)) % x.ndim
        shape[axis] = s.size
    out = (x.astype(np.float32) - z.astype(np.float32).reshape(shape if z.size > 1 else ())) * \
        s.reshape(shape if s.size > 1 else ())
    return out.astype(np.float32)


def _evaluate_reference(n: Node, graph: Graph, opset: int) -> list[np.ndarray]:
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    ins = [t for t in n.inputs if t]
    node = helper.make_node(n.op, n.inputs, n.outputs, domain=n.domain or None,
                            **{k: (onnx.numpy_helper.from_array(v) if isinstance(v, np.ndarray)
                                   else v) for k, v in n.attrs.items()})
    tensor_in = [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(
        graph.consts[t].dtype), graph.consts[t].shape) for t in ins]
    tensor_out = [helper.make_tensor_value_info(t, onnx.TensorProto.UNDEFINED, None)
                  for t in n.outputs if t]
    model = helper.make_model(helper.make_graph([node], "fold", tensor_in, tensor_out),
                              opset_imports=[helper.make_opsetid("", opset)])
    try:
        res = ReferenceEvaluator(model).run(None, {t: graph.consts[t] for t in ins})
    except Exception as e:  # noqa: BLE001 - the reference raises whatever numpy raises
        raise ModelFormatError(f"{n.where()}: its constant inputs cannot be evaluated ({e})"
                               ) from None
    return [np.asarray(r) for r in res]
