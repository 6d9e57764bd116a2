#!/usr/bin/env python3
"""atheris target: a llama2.c checkpoint and its tokenizer.bin from the fuzzer (joined by SEPARATOR;
without one, the checkpoint alone with the seed tokenizer) through `convert`, then the converted
file's tokenizer (harness.exercise_edgt)."""
from __future__ import annotations

from pathlib import Path

import atheris  # noqa: F401

import harness

with harness.instrumented("converters"):
    from edgert.converters import convert

SEPARATOR = b"\xffTOKENIZER.BIN\xff"
SCRATCH = harness.scratch_dir()
DEFAULT_TOKENIZER = (harness.CORPUS / "llama2c.tokenizer.bin").read_bytes()


def convert_input(data: bytes) -> Path:
    model, sep, tok = data.partition(SEPARATOR)
    harness.clear(SCRATCH)
    src, tok_path, out = SCRATCH / "model.bin", SCRATCH / "tokenizer.bin", SCRATCH / "out.edgt"
    src.write_bytes(model)
    tok_path.write_bytes(tok if sep else DEFAULT_TOKENIZER)
    return convert(src, out, tokenizer=tok_path, progress=False)


def test_one_input(data: bytes) -> None:
    with harness.typed_errors_allowed():
        harness.exercise_edgt(convert_input(data))


if __name__ == "__main__":
    harness.main(test_one_input)
