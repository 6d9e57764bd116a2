"""The streaming front end: samples in, one model output per window out.

`WindowStream(model, window=128, hop=32)` wraps the Cython ring buffer (_runtime.WindowStream):
it works out the channel count and the layout the model wants from its input shape, so a model
taking [1, 128] (one channel), [1, C, 128] (channels first, a 1-D CNN) or [128, 1, C] / [1, 128, C]
(time first, a GRU) all stream the same way. Per-sample work (ring buffer, normalisation, the
optional spectrum, the model call) runs in C without the GIL. numpy is not needed: a chunk may be
an array.array / memoryview of float32 samples (then push returns a memoryview), or a numpy array
(then it returns a numpy array).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ..errors import InvalidArgumentError


def infer_layout(input_shape: Sequence[int], window: int, spectrum: bool,
                 channels: Optional[int]) -> tuple[int, str]:
    """(channels, "cw" | "wc") for a model input shape; the unit dims are ignored."""
    per = window // 2 + 1 if spectrum else window
    core = [d for d in input_shape if d != 1]
    if not core:
        core = [1]
    if len(core) == 1:
        if core[0] == per:
            return 1, "cw"
        if channels and core[0] == per * channels:
            return channels, "cw"
    if len(core) == 2:
        a, b = core
        if b == per and (channels in (None, a)):
            return a, "cw"
        if a == per and (channels in (None, b)):
            return b, "wc"
    raise InvalidArgumentError(
        f"the model's input {tuple(input_shape)} does not take a window of {window} samples"
        f"{' as a ' + str(per) + '-bin spectrum' if spectrum else ''}"
        f"{' x ' + str(channels) + ' channels' if channels else ''}: use --window/--channels "
        f"that match it")


def WindowStream(model: Any, window: int, hop: int, channels: Optional[int] = None,
                 mean: Any = None, std: Any = None, spectrum: bool = False,
                 layout: Optional[str] = None) -> Any:
    """A streaming front end for a compiled model (see the file banner)."""
    from . import _runtime
    if getattr(model, "backend", "llvm") != "llvm":
        raise InvalidArgumentError("streaming needs a compiled model (this one runs in "
                                   "onnxruntime as a fallback)")
    if window <= 0 or hop <= 0:
        raise InvalidArgumentError("window and hop must be positive")
    ch, lay = infer_layout(model.input_shapes[0], window, spectrum, channels)
    if layout is not None:
        if layout not in ("cw", "wc"):
            raise InvalidArgumentError("layout is 'cw' (channels, time) or 'wc' (time, channels)")
        lay = layout
    return _runtime.WindowStream(model, window, hop, ch, mean, std, spectrum, lay)
