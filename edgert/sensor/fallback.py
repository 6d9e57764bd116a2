"""`compile(..., fallback="onnxruntime")`: the same interface as a compiled model, backed by an
onnxruntime session (one thread), for graphs the sensor compiler refuses."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np


class OrtModel:
    """`m(x)` / `m.run_batch(xs)` through onnxruntime. `reason` says why it was not compiled."""
    backend = "onnxruntime"

    def __init__(self, data: bytes, input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                 reason: str = "") -> None:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        self.reason = reason
        ins = self.session.get_inputs()
        self.input_names = [i.name for i in ins]
        self.output_names = [o.name for o in self.session.get_outputs()]
        shapes = dict(input_shapes or {})
        self.input_shapes = tuple(tuple(shapes.get(i.name, i.shape)) for i in ins)
        self._types = [np.float32 if "float" in i.type else np.int64 for i in ins]

    def __call__(self, *xs: Any) -> Any:
        feeds = {}
        for name, shape, t, x in zip(self.input_names, self.input_shapes, self._types, xs):
            a = np.asarray(x, dtype=t)
            if all(isinstance(d, int) for d in shape):
                a = a.reshape(shape)
            feeds[name] = a
        out = self.session.run(None, feeds)
        return out[0] if len(out) == 1 else tuple(out)

    def run_batch(self, windows: Any) -> Any:
        res = [self(w) for w in np.asarray(windows)]
        if res and isinstance(res[0], tuple):
            return tuple(np.stack(r) for r in zip(*res))
        return np.stack(res)

    def __repr__(self) -> str:
        return f"<OrtModel (fallback: {self.reason})>"
