"""The runtime's dequantizer (native/tests/dequant_rows) against gguf.quants.dequantize, bit for bit,
on random blocks of every carried quantized type (every code and sub-scale value, extreme and
subnormal f16 scales). Used by tests/test_native.py (x86) and tests/test_kernels_arm.py (qemu)."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Callable, Sequence

import gguf
import numpy as np

# edgert dtype id -> (GGUF type, block elements, block bytes, byte offsets of the f16 fields)
TYPES = {
    2: (gguf.GGMLQuantizationType.Q4_0, 32, 18, (0,)),
    3: (gguf.GGMLQuantizationType.Q4_1, 32, 20, (0, 2)),
    6: (gguf.GGMLQuantizationType.Q5_0, 32, 22, (0,)),
    7: (gguf.GGMLQuantizationType.Q5_1, 32, 24, (0, 2)),
    8: (gguf.GGMLQuantizationType.Q8_0, 32, 34, (0,)),
    11: (gguf.GGMLQuantizationType.Q3_K, 256, 110, (108,)),
    12: (gguf.GGMLQuantizationType.Q4_K, 256, 144, (0, 2)),
    13: (gguf.GGMLQuantizationType.Q5_K, 256, 176, (0, 2)),
    14: (gguf.GGMLQuantizationType.Q6_K, 256, 210, (208,)),
    20: (gguf.GGMLQuantizationType.IQ4_NL, 32, 18, (0,)),
    23: (gguf.GGMLQuantizationType.IQ4_XS, 256, 136, (0,)),
}


def check_dequant_rows(binary: Path, workdir: Path,
                       run: Callable[[Sequence[str]], None] = lambda cmd: subprocess.run(cmd, check=True)) -> int:
    """Runs `binary` (through `run`, e.g. under qemu) on every type; returns the number of values checked."""
    rng = np.random.default_rng(2026)
    checked = 0
    for dtype_id, (gtype, block, nbytes, f16_at) in TYPES.items():
        rows, cols = 24, block * 3
        raw = rng.integers(0, 256, size=(rows * cols // block, nbytes), dtype=np.uint8)
        n = raw.shape[0]
        scale = np.concatenate([rng.normal(size=n // 3) * 0.02, rng.choice([-1, 1], n // 3) * rng.uniform(3e4, 65504, n // 3),
                                rng.uniform(1e-8, 6e-5, n - 2 * (n // 3))])
        for at in f16_at:
            raw[:, at:at + 2] = rng.permutation(scale).astype(np.float16).view(np.uint8).reshape(n, 2)
        src, dst = workdir / f"blocks-{dtype_id}.bin", workdir / f"values-{dtype_id}.bin"
        src.write_bytes(struct.pack("<IQQ", dtype_id, rows, cols) + raw.tobytes())
        run([str(binary), str(src), str(dst)])
        got = np.fromfile(dst, dtype=np.float32)
        want = gguf.quants.dequantize(raw.reshape(-1), gtype).astype(np.float32).reshape(-1)
        assert got.shape == want.shape, (dtype_id, got.shape, want.shape)
        bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
        assert bad.size == 0, (f"{gtype.name}: {bad.size} values differ from gguf, first at {bad[0]}: "
                               f"{got[bad[0]]!r} vs {want[bad[0]]!r}")
        checked += got.size
    return checked
