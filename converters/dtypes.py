"""The tensor dtypes of the edgert format (docs/format.md). Ids are GGUF's `ggml_type` values so
GGUF tensors can be carried byte for byte."""
from __future__ import annotations

from dataclasses import dataclass

from edgert.errors import UnsupportedModelError


@dataclass(frozen=True)
class DType:
    id: int
    name: str
    block_size: int   # elements per block, along the last dim
    block_bytes: int  # bytes per block

    @property
    def is_block(self) -> bool:
        return self.block_size > 1

    def nbytes(self, shape: tuple[int, ...]) -> int:
        """Bytes of a tensor of this dtype and shape; the last dim must fill whole blocks."""
        n = 1
        for d in shape:
            n *= int(d)
        if shape and shape[-1] % self.block_size:
            raise UnsupportedModelError(
                f"{self.name} needs the last dim to be a multiple of {self.block_size}, got shape {shape}")
        return n // self.block_size * self.block_bytes


F32 = DType(0, "f32", 1, 4)
F16 = DType(1, "f16", 1, 2)
BF16 = DType(30, "bf16", 1, 2)
Q8_0 = DType(8, "q8_0", 32, 34)
Q4_0 = DType(2, "q4_0", 32, 18)
Q4_1 = DType(3, "q4_1", 32, 20)

BY_ID: dict[int, DType] = {t.id: t for t in (F32, F16, BF16, Q8_0, Q4_0, Q4_1)}
BY_NAME: dict[str, DType] = {t.name: t for t in BY_ID.values()}


def by_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnsupportedModelError(f"unknown dtype {name!r}; known: {sorted(BY_NAME)}") from None
