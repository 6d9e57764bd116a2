"""Generation from text through the C API (edgert_generate_text with the native tokenizer and
chat formatting) equals the Python path (edgert.LLM: `tokenizers`, jinja2, DecodeStream), piece
for piece, on the real models; the callback can stop generation. edgert.LLM tokenizes with the
native tokenizer where it supports the file, with `tokenizers` otherwise."""
from __future__ import annotations

import pytest

from edgert import LLM, _edgert
from edgert.errors import UnsupportedModelError

from conftest import DATA
from tokenizer_cases import tiny_model, tokenizer_variants

FLAGS = _edgert.TOKENIZE_ADD_SPECIAL | _edgert.TOKENIZE_PARSE_SPECIAL


def native_text(path, prompt: str, n: int, flags: int = FLAGS, stop_after: int = 0) -> tuple[list[str], int]:
    model = _edgert.model_load(str(path))
    params = _edgert.ContextParams()
    params.n_ctx = 512
    ctx = _edgert.context_new(model, params)
    sampler = _edgert.sampler_new()
    pieces: list[str] = []

    def on_piece(text: str) -> bool:
        pieces.append(text)
        return bool(stop_after) and len(pieces) >= stop_after

    n_gen = _edgert.generate_text(ctx, sampler, prompt, flags, n, on_piece)
    return pieces, n_gen


def test_stories_generate_text_equals_llm(stories_edgt) -> None:
    with LLM(stories_edgt, n_ctx=512, n_threads=1) as llm:
        want = list(llm.generate("Once upon a time", max_tokens=40, stream=True))
    pieces, n = native_text(stories_edgt, "Once upon a time", 40)
    assert pieces == want and n == 40
    assert "".join(pieces).startswith(", there was a little girl named Lily")


def test_callback_stops_generation(stories_edgt) -> None:
    pieces, n = native_text(stories_edgt, "Once upon a time", 40, stop_after=3)
    assert len(pieces) == 3 and n <= 4


def test_smollm2_chat_equals_llm_chat(smollm2_edgt) -> None:
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    with LLM(smollm2_edgt, n_ctx=512, n_threads=2) as llm:
        want = list(llm.chat(messages, max_tokens=24, stream=True))
        prompt = llm.render_chat(messages)
    model = _edgert.model_load(str(smollm2_edgt))
    assert _edgert.chat_format(model, messages) == prompt
    pieces, _ = native_text(smollm2_edgt, prompt, 24, _edgert.TOKENIZE_PARSE_SPECIAL)
    assert pieces == want
    assert "".join(pieces) == "The capital of France is Paris."  # stops at <|im_end|>


def test_object_layer_native_text(stories_edgt) -> None:
    from edgert.model import Model
    with Model(stories_edgt) as m, LLM(stories_edgt) as llm:
        ids = m.tokenize("Once upon a time")
        assert ids == llm.tokenize("Once upon a time")  # add_bos as the file says, both paths
        assert m.detokenize(ids, skip_special=True) == "Once upon a time"
        assert m.tokenize("Once", add_special=False) == llm.tokenize("Once", add_bos=False)


def test_llm_tokenizes_natively_and_equals_tokenizers(smollm2_edgt) -> None:
    """edgert.LLM's tokenize uses libedgert's tokenizer (faster) and gives `tokenizers`' ids."""
    wiki = (DATA / "text" / "wikitext-2-raw-test.txt").read_text(encoding="utf-8").split("\n")[:400]
    texts = [t for t in wiki if t] + ["<|im_start|>user\nHi there<|im_end|>\n", "héllo 😀 wörld\u0301"]
    with LLM(smollm2_edgt, n_ctx=64, n_threads=1) as llm:
        tok = llm.tokenizer
        assert tok.native is not None
        calls = []
        native = tok.native
        tok.native = lambda text: calls.append(text) or native(text)
        for t in texts:
            want = tok.hf.encode(t, add_special_tokens=False).ids
            assert llm.tokenize(t) == ([tok.bos_token_id] if tok.add_bos else []) + want, t
            assert llm.tokenize(t, add_bos=False) == want
        assert len(calls) == 2 * len(texts)  # every call took the native path
        assert llm.tokenize(b"caf\xc3\xa9", add_bos=False) == tok.hf.encode("café", add_special_tokens=False).ids


def test_llm_falls_back_to_tokenizers_for_what_libedgert_does_not_support(tmp_path) -> None:
    import json
    tok = tokenizer_variants()["gpt2"]
    j = json.loads(tok["json"])
    j["normalizer"] = {"type": "Lowercase"}  # `tokenizers` runs it, libedgert refuses it
    path = tiny_model(tmp_path / "lower.edgt", {**tok, "json": json.dumps(j)}, 50257)
    with LLM(path, n_ctx=64, n_threads=1) as llm:
        with pytest.raises(UnsupportedModelError, match="Lowercase"):
            llm.tokenizer.native("Hello")
        assert llm.tokenize("Hello World") == llm.tokenizer.hf.encode("hello world", add_special_tokens=False).ids
        assert llm.tokenizer.native is None  # refused once, `tokenizers` from then on
