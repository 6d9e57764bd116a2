"""The tokenizer.json made from a GGUF encodes like transformers' GGUF tokenizer and like llama.cpp
(the `.out` fixtures), on llama.cpp's test strings and on WikiText-2.

Two documented places where transformers' GGUF loader is not the model's real tokenizer, and we
follow the model (and llama.cpp) instead:
- SentencePiece: SentencePiece always prepends its dummy "▁"; transformers' Metaspace(prepend_scheme
  "first") skips it when the text already starts with a space. So ours(text) == transformers(" " + text).
- SmolLM2 (`tokenizer.ggml.pre = smollm`): the model splits every digit apart before GPT-2's regex;
  transformers has no entry for `smollm` and uses GPT-2's regex alone. Vocabulary, merges and special
  tokens are proven equal by giving transformers' tokenizer the smollm pre-tokenizer; with its stock
  one, every remaining difference must be a whitespace run next to a digit.
"""
from __future__ import annotations

import re

import pytest
from tokenizers import Tokenizer

from conftest import DATA, SMOLLM2_GGUF
from converters.gguf_reader import GGUFFile
from converters.gguf_tokenizer import tokenizer_metadata
from converters.tokenizer_json import PRE_TOKENIZERS

TOK = DATA / "tokenizers"
SPM, GPT2 = TOK / "ggml-vocab-llama-spm.gguf", TOK / "ggml-vocab-gpt-2.gguf"


def ours(path) -> Tokenizer:
    with GGUFFile(path) as g:
        return Tokenizer.from_str(tokenizer_metadata(g)["json"])


def theirs(path):
    import transformers
    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def cases(path) -> list[tuple[str, list[int]]]:
    strings = (path.parent / (path.name + ".inp")).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    expected = (path.parent / (path.name + ".out")).read_text(encoding="utf-8").split("\n")
    strings = strings[:-1] if strings[-1] == "" else strings  # the file ends with a separator
    assert len(strings) >= 40 and len(expected) >= len(strings)
    return [(s, [int(x) for x in e.split()]) for s, e in zip(strings, expected)]


def wiki_chunks() -> list[str]:
    return [(DATA / "text" / "wikitext-2-raw-test.txt").read_text(encoding="utf-8")]


@pytest.fixture(scope="module")
def spm():
    return ours(SPM), theirs(SPM)


@pytest.fixture(scope="module")
def gpt2():
    return ours(GPT2), theirs(GPT2)


def test_gpt2_matches_llama_cpp_and_transformers(gpt2):
    mine, ref = gpt2
    for text, expected in cases(GPT2):
        got = mine.encode(text, add_special_tokens=False).ids
        assert got == expected, text
        assert got == ref.encode(text, add_special_tokens=False), text


@pytest.mark.slow
def test_gpt2_wikitext(gpt2):
    mine, ref = gpt2
    for chunk in wiki_chunks():
        assert mine.encode(chunk).ids == ref.encode(chunk)


def test_spm_matches_llama_cpp(spm):
    mine, ref = spm
    for text, expected in cases(SPM):
        assert mine.encode(text, add_special_tokens=False).ids == expected, text
        # see the module docstring: transformers drops the dummy prefix before a leading space
        want = ref.encode(" " + text if text else text, add_special_tokens=False)
        assert mine.encode(text, add_special_tokens=False).ids == want, text
    assert mine.encode("Hello").ids[0] == 1  # add_bos: BOS comes from the post-processor


@pytest.mark.slow
def test_spm_wikitext(spm):
    mine, ref = spm
    for chunk in wiki_chunks():
        assert mine.encode(chunk).ids == ref.encode(" " + chunk)


@pytest.fixture(scope="module")
def smol():
    """(ours, transformers' stock GGUF tokenizer, the same with the smollm pre-tokenizer)."""
    swapped = theirs(SMOLLM2_GGUF)
    swapped.backend_tokenizer.pre_tokenizer = PRE_TOKENIZERS["smollm"]()
    return ours(SMOLLM2_GGUF), theirs(SMOLLM2_GGUF), swapped


def test_smollm2_inp_strings(smol):
    mine, stock, ref = smol
    texts = [t for path in (GPT2, SPM) for t, _ in cases(path)]
    texts += ["<|im_start|>user\nHi<|im_end|>\n", "The capital of France is"]
    for text in texts:
        assert mine.encode(text).ids == ref.encode(text), text
    # without a digit next to whitespace the stock tokenizer agrees too
    plain = [t for t in texts if not re.search(r"\s[\d½]", t)]
    assert len(plain) > 20
    for text in plain:
        assert mine.encode(text).ids == stock.encode(text), text


@pytest.mark.slow
def test_smollm2_wikitext(smol):
    mine, stock, ref = smol
    text = wiki_chunks()[-1]
    assert mine.encode(text).ids == ref.encode(text)
    # line by line (difflib over 300k tokens would be quadratic)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    a = [e.ids for e in mine.encode_batch(lines)]
    b = stock(lines)["input_ids"]
    differing = [ln for ln, x, y in zip(lines, a, b) if x != y]
    assert len(differing) < 0.05 * len(lines)  # a vocabulary error would break most lines
    for ln in differing:
        assert re.search(r"\s[\d½]", ln), ln
