"""Quantized (int8) ops of the sensor path: QuantizeLinear / DequantizeLinear and the QLinear /
Integer ops. ops.kernel_for looks here for what ops.py does not have."""
from __future__ import annotations

from typing import Any, Callable

from .graph import Graph

KERNELS: dict[tuple[str, str], Callable[[Any], None]] = {}
SCRATCH: dict[str, Callable[[Any, Any], int]] = {}


def prepare(g: Graph, dtype: str) -> None:
    """Rewrite quantized patterns for the chosen compute dtype (see the file banner)."""
