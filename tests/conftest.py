"""Shared pytest fixtures: paths to the repo and the shared fixtures (`<repo>/../shared`), a temp
output dir, and tiny random Hugging Face checkpoints generated on demand (cached per session)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
MODELS = SHARED / "models"
DATA = SHARED / "data"
STORIES = MODELS / "stories260K"
SMOLLM2_GGUF = MODELS / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# the source tree's `converters/` is importable as `converters` (installed as edgert.converters).
# Appended, not prepended: the checkout's `edgert/` has no compiled module, so the installed
# `edgert` package must win.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower quality checks; still run in CI")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared fixtures missing at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared_dir) -> Path:
    return MODELS


@pytest.fixture(scope="session")
def data_dir(shared_dir) -> Path:
    return DATA


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """A fresh directory for files a test writes."""
    return tmp_path


# -- tiny random Hugging Face checkpoints ---------------------------------------------------------

TINY_KINDS = ("llama_untied", "mistral", "qwen2", "llama_tied")


def _tiny_config(kind: str):
    import transformers
    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    if kind == "llama_untied":
        return transformers.LlamaConfig(**common, tie_word_embeddings=False, rope_theta=50000.0)
    if kind == "llama_tied":
        return transformers.LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0)
    if kind == "mistral":
        return transformers.MistralConfig(**common, tie_word_embeddings=False, rope_theta=1e6, sliding_window=128)
    if kind == "qwen2":
        return transformers.Qwen2Config(**common, tie_word_embeddings=False, rope_theta=1e6, use_sliding_window=False)
    raise ValueError(kind)


def make_tiny_hf(kind: str, dtype: str, dest: Path) -> Path:
    """Save a random `kind` model in `dtype` ("float32", "float16", "bfloat16") under `dest`, with
    stories260K's tokenizer (its vocab is 512 too). Norm weights and biases are randomised, since
    their defaults (ones, zeros) would hide a converter that drops or misplaces them."""
    import torch
    import transformers
    torch.manual_seed(sum(map(ord, kind)))
    cfg = _tiny_config(kind)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5)
            elif "norm" in name:
                p.copy_(1.0 + torch.randn_like(p) * 0.1)
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(dest, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(STORIES / "hf" / f, dest / f)
    return dest


def make_wide_llama(dest: Path, num_layers: int, seed: int) -> tuple[Path, int]:
    """Save a tiny random Llama whose rows are whole 256-element super-blocks (hidden 256, FFN 512)
    under `dest`, with stories260K's tokenizer. Returns (dest, number of parameters)."""
    import torch
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                                   num_hidden_layers=num_layers, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                                   bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + torch.randn_like(p) * 0.1 if "norm" in name else torch.randn_like(p) * 0.06)
    model.save_pretrained(dest, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(STORIES / "hf" / f, dest / f)
    return dest, sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """Factory: tiny_hf(kind, dtype="float32") -> path of a cached tiny HF checkpoint."""
    made: dict[tuple[str, str], Path] = {}

    def get(kind: str, dtype: str = "float32") -> Path:
        key = (kind, dtype)
        if key not in made:
            made[key] = make_tiny_hf(kind, dtype, tmp_path_factory.mktemp(f"{kind}-{dtype}"))
        return made[key]
    return get


# -- real models converted once per session (API, chat, CLI and native tests) ---------------------

@pytest.fixture(scope="session")
def stories_edgt(tmp_path_factory) -> Path:
    """stories260K converted from its Hugging Face checkpoint with edgert.converters."""
    from edgert.converters import convert
    return convert(STORIES / "hf", tmp_path_factory.mktemp("stories") / "s.edgt", progress=False)


@pytest.fixture(scope="session")
def smollm2_edgt(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from its Q4_1 GGUF (blocks kept as they are)."""
    from edgert.converters import convert
    return convert(SMOLLM2_GGUF, tmp_path_factory.mktemp("smollm2") / "smollm2.edgt",
                   progress=False)
