"""edgert: an on-device LLM inference runtime.

    from edgert import LLM
    with LLM("smollm2.edgt") as llm:
        for chunk in llm.generate("The capital of France is", stream=True):
            print(chunk, end="", flush=True)

The compiled core is imported lazily, so `edgert.errors` and `edgert.converters` work without it.
"""
from __future__ import annotations

from typing import Any

from .errors import (ChatTemplateError, ContextOverflowError, EdgertError, GrammarError,
                     InvalidArgumentError, ModelFormatError, ModelVersionError, OutOfMemoryError,
                     TokenIdError, TokenizerError, UnsupportedModelError)

from .c_library import get_cmake_dir, get_include, get_lib, get_pkgconfig_dir

__version__ = "0.1.0"

_LAZY = {
    "LLM": ("llm", "LLM"),
    "Model": ("model", "Model"),
    "Context": ("model", "Context"),
    "Sampler": ("model", "Sampler"),
    "ModelInfo": ("model", "ModelInfo"),
    "WeightLayout": ("model", "WeightLayout"),
    "ContextParams": ("model", "ContextParams"),
    "SamplerParams": ("model", "SamplerParams"),
}

__all__ = [
    "ChatTemplateError", "ContextOverflowError", "EdgertError", "GrammarError", "InvalidArgumentError",
    "ModelFormatError", "ModelVersionError", "OutOfMemoryError", "TokenIdError", "TokenizerError",
    "UnsupportedModelError", "get_include", "get_lib", "get_cmake_dir", "get_pkgconfig_dir", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgert' has no attribute {name!r}")
