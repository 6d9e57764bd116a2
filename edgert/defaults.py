"""Sampling defaults for the commands people chat with (`edgert chat`, `edgert run`, `edgert
serve`): the model's own generation_config when its source had one (metadata, docs/format.md),
else llama.cpp's defaults. The Python API keeps greedy decoding as its default, so library
results stay deterministic unless a caller asks for sampling."""
from __future__ import annotations

from typing import Any, Mapping

# llama.cpp's common_params_sampling defaults (temp 0.8, top-k 40, top-p 0.95, min-p 0.05,
# repeat penalty off).
LLAMA_CPP_DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.95,
                                      "min_p": 0.05, "repeat_penalty": 1.0}


def sampling_defaults(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(SamplerParams keyword arguments, where they came from) for this model."""
    gen = metadata.get("generation_config") or {}
    out = dict(LLAMA_CPP_DEFAULTS)
    if not isinstance(gen, Mapping) or not gen:
        return out, "llama.cpp defaults (the model has no generation_config)"
    if gen.get("do_sample") is False:
        out["temperature"] = 0.0
    elif isinstance(gen.get("temperature"), (int, float)):
        out["temperature"] = float(gen["temperature"])
    for key, ours in (("top_k", "top_k"), ("top_p", "top_p"), ("min_p", "min_p"),
                      ("repetition_penalty", "repeat_penalty")):
        if isinstance(gen.get(key), (int, float)) and not isinstance(gen.get(key), bool):
            out[ours] = type(out[ours])(gen[key])
    return out, "the model's generation_config"
