#!/usr/bin/env python3
"""atheris targets over a Hugging Face checkpoint directory: the fuzzer writes one of its files
(or, for `hf_config`, the JSON side files joined by SEPARATOR) and the rest come from the seed
checkpoint (`corpus/hf.base/`, a 1-layer model cut from stories260K). Each input goes through
`convert`, then the converted file's tokenizer and template (harness.exercise_edgt).

    python fuzz_hf.py hf_config|safetensors|tokenizer_json [libFuzzer flags] [corpus]
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import atheris  # noqa: F401

import harness

with harness.instrumented("converters"):
    from edgert.converters import convert

BASE = harness.CORPUS / "hf.base"
SEPARATOR = b"\n\x00NEXT-FILE\x00\n"
# hf_config's input: these files in this order, joined by SEPARATOR (missing ones are left out).
SIDE_FILES = ("config.json", "tokenizer_config.json", "generation_config.json")
SCRATCH = harness.scratch_dir()


def _checkpoint_with(files: dict[str, bytes], drop: tuple[str, ...] = ()) -> Path:
    harness.clear(SCRATCH)
    src = SCRATCH / "src"
    shutil.copytree(BASE, src)
    for name, data in files.items():
        (src / name).write_bytes(data)
    for name in drop:
        (src / name).unlink(missing_ok=True)
    return src


def _convert(src: Path) -> Path:
    return convert(src, SCRATCH / "out.edgt", progress=False)


def hf_config_input(data: bytes) -> Path:
    parts = data.split(SEPARATOR)
    return _convert(_checkpoint_with(dict(zip(SIDE_FILES, parts)),
                                     drop=tuple(n for n in SIDE_FILES[len(parts):] if n != "config.json")))


def safetensors_input(data: bytes) -> Path:
    return _convert(_checkpoint_with({"model.safetensors": data}))


def tokenizer_json_input(data: bytes) -> Path:
    return _convert(_checkpoint_with({"tokenizer.json": data}))


CONVERT_INPUT = {"hf_config": hf_config_input, "safetensors": safetensors_input,
                 "tokenizer_json": tokenizer_json_input}


def _target(convert_input):
    def test_one_input(data: bytes) -> None:
        with harness.typed_errors_allowed():
            harness.exercise_edgt(convert_input(data))
    return test_one_input


TARGETS = {name: _target(f) for name, f in CONVERT_INPUT.items()}

if __name__ == "__main__":
    # The target name is the first argument; libFuzzer's fork mode re-runs this script with the
    # libFuzzer flags only, so the children find the name in the environment instead.
    name = os.environ.get("EDGERT_FUZZ_HF_TARGET")
    if name is None and len(sys.argv) > 1 and sys.argv[1] in TARGETS:
        name = sys.argv.pop(1)
    if name not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(TARGETS)} [libFuzzer flags] [corpus]")
    os.environ["EDGERT_FUZZ_HF_TARGET"] = name
    harness.main(TARGETS[name])
