"""atheris targets over a Hugging Face checkpoint directory: the fuzzer writes one of its files
(or, for `hf_config`, the JSON side files joined by SEPARATOR) and the rest come from the seed
checkpoint (`corpus/hf.base/`, a 1-layer model cut from stories260K). Each input goes through
`convert`, then the converted file's tokenizer and template (harness.exercise_edgt).

    python fuzz_hf.py hf_config|safetensors|tokenizer_json [libFuzzer flags] [corpus]
"""
from __future__ import annotations

import shutil
import sys

import atheris  # noqa: F401

import harness

with harness.instrumented("converters"):
    from edgert.converters import convert

BASE = harness.CORPUS / "hf.base"
SEPARATOR = b"\n\x00NEXT-FILE\x00\n"
# hf_config's input: these files in this order, joined by SEPARATOR (missing ones are left out).
SIDE_FILES = ("config.json", "tokenizer_config.json", "generation_config.json")
SCRATCH = harness.scratch_dir()


def _checkpoint_with(files: dict[str, bytes]) -> None:
    harness.clear(SCRATCH)
    src = SCRATCH / "src"
    shutil.copytree(BASE, src)
    for name, data in files.items():
        (src / name).write_bytes(data)


def _convert() -> None:
    with harness.typed_errors_allowed():
        convert(SCRATCH / "src", SCRATCH / "out.edgt", progress=False)
        harness.exercise_edgt(SCRATCH / "out.edgt")


def hf_config(data: bytes) -> None:
    parts = data.split(SEPARATOR)
    _checkpoint_with(dict(zip(SIDE_FILES, parts)))
    for name in SIDE_FILES[len(parts):]:
        if name != "config.json":
            (SCRATCH / "src" / name).unlink(missing_ok=True)
    _convert()


def safetensors(data: bytes) -> None:
    _checkpoint_with({"model.safetensors": data})
    _convert()


def tokenizer_json(data: bytes) -> None:
    _checkpoint_with({"tokenizer.json": data})
    _convert()


TARGETS = {"hf_config": hf_config, "safetensors": safetensors, "tokenizer_json": tokenizer_json}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(TARGETS)} [libFuzzer flags] [corpus]")
    target = TARGETS[sys.argv.pop(1)]
    harness.main(target)
