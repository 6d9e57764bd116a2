#!/usr/bin/env python3
"""atheris target: a GGUF file from the fuzzer through `edgert.converters.convert` (the bounds-checked
reader, the llama import, the tokenizer.ggml.* -> tokenizer.json rebuild, the .edgt writer), then
the converted file's tokenizer and chat template (harness.exercise_edgt)."""
from __future__ import annotations

from pathlib import Path

import atheris  # noqa: F401  (harness sets it up)

import harness

with harness.instrumented("converters"):
    from edgert.converters import convert

SCRATCH = harness.scratch_dir()


def convert_input(data: bytes) -> Path:
    """Convert the input as a .gguf file; returns the .edgt written (or raises)."""
    src, out = SCRATCH / "in.gguf", SCRATCH / "out.edgt"
    harness.clear(SCRATCH)
    src.write_bytes(data)
    return convert(src, out, progress=False)


def test_one_input(data: bytes) -> None:
    with harness.typed_errors_allowed():
        harness.exercise_edgt(convert_input(data))


if __name__ == "__main__":
    harness.main(test_one_input)
