"""edgert.LLM on stories260K, converted at test time from its Hugging Face checkpoint: tokens,
logits against PyTorch, generation, streaming, stop strings, seeds, cache reuse and typed errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgert
from edgert import LLM
from edgert.stop_strings import StopStringFilter

REPO = Path(__file__).resolve().parents[1]
STORIES_HF = REPO.parent / "shared" / "models" / "stories260K" / "hf"
PROMPT = "Once upon a time"
# transformers' LlamaForCausalLM and llama2.c's run.c agree on this greedy continuation.
KNOWN_CONTINUATION = ", there was a little girl named Lily. She loved to play outside in the park."


@pytest.fixture(scope="module")
def llm(stories_edgt: Path):
    with LLM(stories_edgt, n_threads=2) as model:
        yield model


def test_info_matches_the_checkpoint_config(llm: LLM) -> None:
    config = json.loads((STORIES_HF / "config.json").read_text())
    info = llm.info
    assert info.architecture == "llama"
    assert info.vocab_size == config["vocab_size"]
    assert info.hidden_size == config["hidden_size"]
    assert info.num_layers == config["num_hidden_layers"]
    assert info.num_kv_heads == config["num_key_value_heads"]
    assert llm.metadata["hparams"]["num_heads"] == config["num_attention_heads"]
    assert info.bos_token_id == config["bos_token_id"]


def test_layout_reports_the_load_time_weight_relayout(smollm2_edgt: Path) -> None:
    from edgert import _edgert
    # SmolLM2's matrices are q4_1: every SIMD table re-lays them out for its kernels at load.
    with LLM(smollm2_edgt, n_threads=1) as llm:
        layout, weights = llm.layout, llm.info.weights_size
        if _edgert.isa() == "scalar":
            assert layout.isa == "" and layout.bytes == 0
        else:
            assert layout.isa == _edgert.isa()
            # all matrices but the untied-or-tied embedding's rows: a large share of the file
            assert weights // 4 < layout.bytes < 2 * weights
            assert 0.0 < layout.seconds < 120.0
    with LLM(smollm2_edgt, n_threads=1, exact=True) as exact:
        assert exact.layout.isa == "" and exact.layout.bytes == 0  # exact matmul reads the file


def test_tokenize_agrees_with_tokenizers_and_adds_bos(llm: LLM) -> None:
    from tokenizers import Tokenizer
    reference = Tokenizer.from_file(str(STORIES_HF / "tokenizer.json"))
    text = "Once upon a time, Lily saw a cat."
    expected = reference.encode(text, add_special_tokens=False).ids
    assert llm.tokenize(text) == [llm.info.bos_token_id] + expected
    assert llm.tokenize(text, add_bos=False) == expected
    assert llm.count_tokens(text) == len(expected) + 1
    assert llm.detokenize(expected) == text


def test_logits_match_pytorch(stories_edgt: Path) -> None:
    import torch
    import transformers
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(STORIES_HF), dtype=torch.float32)
    # An f32 KV cache, so the only difference left is summation order.
    with LLM(stories_edgt, kv_type="f32") as exact:
        ids = exact.tokenize(PROMPT + ", there was a little")
        with torch.no_grad():
            expected = ref(torch.tensor([ids])).logits[0].numpy()
        got = exact.logits(ids, all_positions=True)
        assert got.dtype == np.float32 and got.shape == (len(ids), exact.info.vocab_size)
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)
        np.testing.assert_array_equal(exact.logits(ids), got[-1])


def test_logits_start_from_an_empty_cache(llm: LLM) -> None:
    llm.generate(PROMPT, max_tokens=8)  # leaves tokens in the cache
    first = llm.logits([1, 403, 407])
    llm.logits([1, 500, 2, 7, 9])
    np.testing.assert_array_equal(llm.logits([1, 403, 407]), first)


def test_greedy_continuation_is_the_known_one(llm: LLM) -> None:
    assert llm.generate(PROMPT, max_tokens=32).startswith(KNOWN_CONTINUATION)


def test_stream_chunks_join_to_the_non_streamed_text(llm: LLM) -> None:
    chunks = list(llm.generate(PROMPT, max_tokens=40, stream=True))
    assert len(chunks) > 10
    assert "".join(chunks) == llm.generate(PROMPT, max_tokens=40)


def test_text_stream_never_splits_a_multibyte_character(llm: LLM) -> None:
    # stories260K's vocabulary has no token for these characters: they tokenize to byte-fallback
    # tokens, so each character spans several ids and a naive per-token decode yields U+FFFD.
    text = "Lily said: café, 日本語 and 😀!"
    ids = llm.tokenize(text, add_bos=False)
    assert len(ids) > len(text.encode("utf-8")) // 2, "the text should fall back to byte tokens"
    naive = [llm.detokenize([i]) for i in ids]
    assert any("\ufffd" in piece for piece in naive), "precondition: per-token decode splits"
    chunks = list(llm.tokenizer.stream().feed(ids))
    assert not any("\ufffd" in c for c in chunks)
    assert "".join(chunks) == text


def test_stop_string_cuts_the_text_before_it(llm: LLM) -> None:
    full = llm.generate(PROMPT, max_tokens=30)
    assert llm.generate(PROMPT, max_tokens=30, stop="Lily") == full[:full.index("Lily")]
    # " girl named" spans three tokens (" g", "ir", "l" ... " named"), so it arrives split.
    streamed = "".join(llm.generate(PROMPT, max_tokens=30, stop=["zzz", "girl named"],
                                    stream=True))
    assert streamed == full[:full.index("girl named")]


def test_stop_filter_holds_back_partial_matches() -> None:
    f = StopStringFilter(["<end>"])
    assert f.push("abc<e") == "abc"
    assert f.push("n") == ""
    assert f.push("x") == "<enx"
    assert f.push("yz<") == "yz"
    assert f.push("end>tail") == ""
    assert f.stopped and f.flush() == ""
    g = StopStringFilter(["STOP"])
    assert g.push("ST") == "" and g.flush() == "ST"


def test_seeds_are_reproducible(llm: LLM) -> None:
    kwargs = dict(max_tokens=40, temperature=1.0, top_p=0.95, seed=1234)
    a = llm.generate(PROMPT, **kwargs)
    b = llm.generate(PROMPT, **kwargs)
    c = llm.generate(PROMPT, **{**kwargs, "seed": 99})
    assert a == b
    assert a != c


def test_generate_ids_uses_the_same_sampling_as_streaming(llm: LLM) -> None:
    prompt = llm.tokenize(PROMPT)
    kwargs = dict(temperature=0.8, top_k=40, min_p=0.05, repeat_penalty=1.3, seed=7)
    ids = llm.generate_ids(prompt, 30, **kwargs)
    assert 0 < len(ids) <= 30
    text = llm.generate(PROMPT, max_tokens=30, **kwargs)
    prefix = llm.detokenize(prompt)
    assert llm.detokenize(prompt + ids)[len(prefix):] == text


def test_cache_is_reused_for_a_common_prefix(llm: LLM) -> None:
    evaluated: list[int] = []
    original = llm.context.eval

    def counting_eval(tokens, **kw):
        evaluated.append(len(tokens))
        return original(tokens, **kw)

    first = llm.generate(PROMPT, max_tokens=10)
    llm.context.eval = counting_eval  # type: ignore[method-assign]
    try:
        again = llm.generate(PROMPT + first, max_tokens=10)
    finally:
        del llm.context.eval
    assert evaluated[0] < len(llm.tokenize(PROMPT + first)) // 2
    llm.reset()
    assert llm.generate(PROMPT + first, max_tokens=10) == again


def test_a_new_call_invalidates_an_open_stream(llm: LLM) -> None:
    stream = llm.generate(PROMPT, max_tokens=30, stream=True)
    next(stream)
    llm.generate("The dog", max_tokens=3)
    with pytest.raises(edgert.InvalidArgumentError, match="stream"):
        list(stream)


def test_prompt_longer_than_the_context_is_refused(stories_edgt: Path) -> None:
    with LLM(stories_edgt, n_ctx=16) as small:
        prompt = "Once upon a time there was a little girl named Lily who liked cats."
        n = small.count_tokens(prompt)
        assert n > 16
        with pytest.raises(edgert.ContextOverflowError, match=rf"n_prompt={n}.*n_ctx=16"):
            small.generate(prompt)
        with pytest.raises(edgert.ContextOverflowError):
            small.logits(list(range(20)))
        # Generation that reaches the end of the context stops there instead of failing.
        assert len(small.generate_ids([1, 403], max_tokens=100)) <= 15


def test_invalid_utf8_prompt_is_a_tokenizer_error(llm: LLM) -> None:
    with pytest.raises(edgert.TokenizerError, match="UTF-8"):
        llm.generate(b"Once upon \xff\xfe a time")
    with pytest.raises(edgert.TokenizerError):
        llm.tokenize("lone surrogate \udcff")
    assert llm.generate("Once upon a time".encode(), max_tokens=5) == \
        llm.generate("Once upon a time", max_tokens=5)


def test_token_ids_out_of_range_are_refused(llm: LLM) -> None:
    vocab = llm.info.vocab_size
    with pytest.raises(edgert.TokenIdError, match=str(vocab)):
        llm.logits([1, vocab])
    with pytest.raises(edgert.TokenIdError):
        llm.generate_ids([1, -1], max_tokens=2)
    with pytest.raises(edgert.TokenIdError):
        llm.detokenize([2**40])
    # The binding refuses too, without the Python check in front of it.
    with pytest.raises(edgert.TokenIdError):
        llm.context.eval([vocab + 5])


def test_chat_without_a_template_is_a_chat_template_error(llm: LLM) -> None:
    assert not llm.metadata.get("chat_template")
    with pytest.raises(edgert.ChatTemplateError, match="no chat template"):
        llm.chat([{"role": "user", "content": "hi"}])


def test_missing_and_corrupt_files_give_typed_errors(tmp_path: Path, stories_edgt: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LLM(tmp_path / "absent.edgt")
    garbage = tmp_path / "garbage.edgt"
    garbage.write_bytes(b"NOPE" + bytes(200))
    with pytest.raises(edgert.ModelFormatError):
        LLM(garbage)
    truncated = tmp_path / "truncated.edgt"
    truncated.write_bytes(stories_edgt.read_bytes()[:5000])
    with pytest.raises(edgert.ModelFormatError):
        LLM(truncated)
    with pytest.raises(edgert.UnsupportedModelError, match="f16"):
        LLM(stories_edgt, kv_type="q3")


def test_close_frees_and_later_use_is_an_error(stories_edgt: Path) -> None:
    with LLM(stories_edgt) as model:
        assert model.generate(PROMPT, max_tokens=2)
    with pytest.raises(edgert.InvalidArgumentError, match="closed"):
        model.generate(PROMPT, max_tokens=2)


def test_saved_state_resumes_the_conversation(stories_edgt: Path, tmp_path: Path) -> None:
    state = tmp_path / "conversation.state"
    with LLM(stories_edgt) as a:
        first = a.generate(PROMPT, max_tokens=10)
        held = a.context.tokens
        assert len(held) == a.n_cached > len(a.tokenize(PROMPT))
        a.save_state(state)
        expected = a.generate(PROMPT + first, max_tokens=12)
    with LLM(stories_edgt) as b:
        b.load_state(state)
        assert b.context.tokens == held
        assert b.generate(PROMPT + first, max_tokens=12) == expected
        held = b.context.tokens
        with pytest.raises(FileNotFoundError):
            b.load_state(tmp_path / "absent.state")
        (tmp_path / "junk.state").write_bytes(b"junk" * 64)
        with pytest.raises(edgert.ModelFormatError):
            b.load_state(tmp_path / "junk.state")
        assert b.context.tokens == held  # a failed load leaves the context as it was
