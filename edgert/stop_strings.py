"""Cuts a stream of text chunks at the first stop string, even when the stop string arrives split
over several chunks: text that could still be the start of a stop string is held back until the
next chunk decides it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class StopStringFilter:
    stops: Sequence[str]
    _pending: str = ""
    stopped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.stops = [s for s in self.stops if s]

    def push(self, chunk: str) -> str:
        """Text that is safe to emit now. After a stop string is seen, `stopped` is True and the
        stop string and everything after it are dropped."""
        if self.stopped:
            return ""
        text = self._pending + chunk
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = self._held_suffix_len(text)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def flush(self) -> str:
        """Text held back when the stream ends without completing a stop string."""
        text, self._pending = self._pending, ""
        return "" if self.stopped else text

    def _held_suffix_len(self, text: str) -> int:
        # The longest suffix of text that is a proper prefix of some stop string.
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
