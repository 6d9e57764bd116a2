"""ModelDesc -> `.edgt` file, atomically: the file is written under a temporary name beside the
output and renamed over it only when complete, so an interrupted or failed run never leaves a
partial OUT.edgt (nor destroys an existing one)."""
from __future__ import annotations

import datetime
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .. import quantize as codec
from ..dtypes import BY_NAME, F32
from ..edgt_file import EdgtWriter, TensorSpec
from ..write_model import CONVERTER_VERSION
from .model_desc import ModelDesc


def tensor_plan(desc: ModelDesc, float_type: str = "f32") -> list[tuple[str, Any, tuple[int, ...]]]:
    """(name, dtype, shape) of every tensor as it will be written."""
    out = []
    for n in desc.weights:
        shape = desc.shape(n)
        if n in desc.encoded:
            out.append((n, desc.encoded[n][0], shape))
        elif len(shape) == 1:
            out.append((n, F32, shape))
        else:
            out.append((n, BY_NAME[float_type], shape))
    return out


def file_bytes(desc: ModelDesc, float_type: str = "f32") -> int:
    """Bytes of the tensors as they would be written (no header, no padding)."""
    return sum(d.nbytes(s) for _, d, s in tensor_plan(desc, float_type))


def write_desc(desc: ModelDesc, out: str | os.PathLike, *, compression: dict[str, Any],
               float_type: str = "f32") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = tensor_plan(desc, float_type)
    counts = Counter(d.name for _, d, _ in plan)
    metadata: dict[str, Any] = {
        "format": "edgert",
        "format_version": 1,
        "architecture": "llama",
        "name": desc.name,
        "hparams": desc.hparams_for_file(),
        "tokenizer": desc.tokenizer,
        "chat_template": desc.chat_template,
        "quantization": {"recipe": "compress", "tensor_types": dict(sorted(counts.items()))},
        "provenance": {
            **{k: v for k, v in desc.source.items() if k in ("source", "source_format", "source_sha256")},
            "converter": f"edgert.converters {CONVERTER_VERSION} (compress)",
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "compression": compression,
        },
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with EdgtWriter(tmp, metadata, [TensorSpec(n, d, s) for n, d, s in plan]) as w:
            for n, d, s in plan:
                if n in desc.encoded:
                    w.write(n, desc.encoded[n][1])
                else:
                    w.write(n, codec.encode(desc.weights[n].detach().numpy().astype(np.float32), d))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
