"""Reading a model file's bytes, bounded: the one piece of the graph reader a cached start needs.

Kept apart from graph.py (numpy, onnx) so that `sensor.compile` on a cache hit imports neither
numpy nor onnx: it reads and hashes the bytes here, then loads the cached library.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..errors import ModelFormatError

# A sensor model is kilobytes to a few MiB; this bound keeps a hostile file from costing unbounded
# memory before anything is checked.
MAX_MODEL_BYTES = 512 << 20

ModelSource = Union[str, os.PathLike, bytes]


def read_model_bytes(source: ModelSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        size = path.stat().st_size  # FileNotFoundError is the caller's to see
        if size > MAX_MODEL_BYTES:
            raise ModelFormatError(f"{path}: {size} bytes is larger than a sensor model may be "
                                   f"({MAX_MODEL_BYTES >> 20} MiB); run it with onnxruntime")
        data = path.read_bytes()
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"the model is {len(data)} bytes, more than a sensor model may be")
    if not data:
        raise ModelFormatError("the model is empty (0 bytes): not an ONNX file")
    return data
