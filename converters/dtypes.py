"""The tensor dtypes of the edgert format (docs/format.md). Ids are GGUF's `ggml_type` values so
GGUF tensors can be carried byte for byte; ids from 1000 on are edgert's own (never GGUF's)."""
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
Q5_0 = DType(6, "q5_0", 32, 22)
Q5_1 = DType(7, "q5_1", 32, 24)
IQ4_NL = DType(20, "iq4_nl", 32, 18)
Q3_K = DType(11, "q3_k", 256, 110)
Q4_K = DType(12, "q4_k", 256, 144)
Q5_K = DType(13, "q5_k", 256, 176)
Q6_K = DType(14, "q6_k", 256, 210)
IQ4_XS = DType(23, "iq4_xs", 256, 136)
# edgert's own: 3-bit codes with one f16 scale per 32 (3.5 bits per weight), for rows that are not
# whole 256-element super-blocks (SmolLM2's 576), where q3_k cannot go.
Q3_0 = DType(1003, "q3_0", 32, 14)

ALL = (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, Q3_0)
BY_ID: dict[int, DType] = {t.id: t for t in ALL}
BY_NAME: dict[str, DType] = {t.name: t for t in BY_ID.values()}


def by_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnsupportedModelError(f"unknown dtype {name!r}; known: {sorted(BY_NAME)}") from None
