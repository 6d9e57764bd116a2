"""edgert.sensor: small ONNX models (a vibration anomaly detector, a keyword spotter, a gesture
classifier) compiled once into a native function for their static shapes, and a streaming front
end that feeds them windows of sensor samples.

    from edgert import sensor
    m = sensor.compile("model.onnx")          # cached on disk; the second start takes milliseconds
    y = m(window)                             # numpy in, the same preallocated array out
    y = m(array.array("f", samples))          # any other buffer or list in: a memoryview out
    ys = m.run_batch(windows)                 # [B, ...] in one call
    s = sensor.WindowStream(m, window=128, hop=32, channels=3, mean=mu, std=sd)
    for chunk in source: outputs = s.push(chunk)   # [k, out] for the windows completed

The rule for outputs: a numpy array in gives numpy arrays out; any other input (array.array,
memoryview, bytes-like, lists) gives memoryviews (format "f"/"b"/"B"/"i"/"q", the output's shape).
A cached compile (or `load` of an AOT library) and calls with such inputs never import numpy, so a
script on a small board does without numpy's ~20 MiB of resident memory.

Files: graph.py (ONNX reader: checks, shape inference, constant folding), source.py (the model's
bytes, read without numpy for a cached start), optimize.py (BatchNorm folding, elementwise fusion),
codegen.py (LLVM IR through llvmlite), ops.py, microkernels.py and quant.py (the op library),
compiler.py (JIT, cache, AOT), _runtime.pyx (the Cython runner and ring buffer), stream.py, cli.py
(`edgert sensor run|bench|compile`). Needs `pip install "edgert[sensor]"`.
"""
from __future__ import annotations

from typing import Any

from .compiler import AotArtifact, CompileInfo, compile, load  # noqa: A004

__all__ = ["compile", "load", "AotArtifact", "CompileInfo", "WindowStream"]


def __getattr__(name: str) -> Any:
    if name == "WindowStream":
        from .stream import WindowStream
        return WindowStream
    raise AttributeError(f"module 'edgert.sensor' has no attribute {name!r}")
