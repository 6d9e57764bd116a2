"""Generation from text through the C API (edgert_generate_text with the native tokenizer and
chat formatting) equals the Python path (edgert.LLM: `tokenizers`, jinja2, DecodeStream), piece
for piece, on the real models; the callback can stop generation."""
from __future__ import annotations

from edgert import LLM, _edgert

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
