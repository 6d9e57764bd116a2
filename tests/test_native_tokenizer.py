"""The native tokenizer (libedgert: edgert_tokenize, edgert_detokenize, the streaming
edgert_detokenizer) against Hugging Face `tokenizers`, the reference, and llama.cpp's expected ids.

Every tokenizer of the shared models and of the benchmark shapes (tests/tokenizer_cases.py) is
carried in a tiny .edgt model and driven through the C API (edgert._edgert). Inputs: llama.cpp's
test strings, the whole WikiText-2 test file, the TinyStories sample, random Unicode strings, and
invalid UTF-8 (refused with EDGERT_ERR_INVALID_TEXT -> TokenizerError, as edgert.tokenizer refuses
it). The Unicode tables are checked against the reference's regex engine code point by code point,
and regenerating them must give the committed bytes.

EDGERT_TOKENIZER_STRINGS sets the number of random strings per tokenizer (default 3000 in CI;
the deeper local run reported with this work used 100000)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

from edgert import _edgert
from edgert.errors import TokenIdError, TokenizerError, UnsupportedModelError
from edgert.tokenizer import Tokenizer as EdgertTokenizer

from conftest import DATA, REPO_ROOT
from tokenizer_cases import (GPT2_GGUF, SPM_GGUF, llama_cpp_cases, random_invalid_utf8,
                             random_strings, tiny_model, tokenizer_variants)

N_RANDOM = int(os.environ.get("EDGERT_TOKENIZER_STRINGS", "3000"))
WIKI = (DATA / "text" / "wikitext-2-raw-test.txt").read_text(encoding="utf-8")
STORIES_TEXT = (DATA / "text" / "tinystories-valid-sample.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, tuple[Tokenizer, object]]:
    """name -> (reference tokenizers.Tokenizer, native model handle)."""
    out = {}
    root = tmp_path_factory.mktemp("tok")
    for name, tok in tokenizer_variants().items():
        ref = Tokenizer.from_str(tok["json"])
        path = tiny_model(root / f"{name}.edgt", tok, ref.get_vocab_size(with_added_tokens=True))
        out[name] = (ref, _edgert.model_load(str(path)))
    return out


def native_ids(model, text, flags=_edgert.TOKENIZE_PARSE_SPECIAL) -> list[int]:
    return _edgert.tokenize(model, text, flags)


def test_every_variant_builds(variants) -> None:
    assert set(variants) == {"smollm2", "gpt2", "llama-spm", "llama3", "qwen2", "stories260k-hf",
                             "stories260k-llama2c",
                             "smollm2-transformers", "tinyllama-transformers"}


@pytest.mark.parametrize("gguf", [GPT2_GGUF, SPM_GGUF], ids=["gpt2", "llama-spm"])
def test_llama_cpp_expected_ids(variants, gguf) -> None:
    ref, model = variants["gpt2" if gguf == GPT2_GGUF else "llama-spm"]
    cases = llama_cpp_cases(gguf)
    assert len(cases) >= 40
    for text, expected in cases:
        assert native_ids(model, text) == expected, text
        assert native_ids(model, text) == ref.encode(text, add_special_tokens=False).ids, text


def test_fixture_strings_every_variant(variants) -> None:
    texts = [t for g in (GPT2_GGUF, SPM_GGUF) for t, _ in llama_cpp_cases(g)]
    texts += ["<|im_start|>user\nHi<|im_end|>\n", "<s>Hello</s> <s>", "it'S 'ſ 'LL 'Ve x",
              "  <|endoftext|>  x", ""]
    for name, (ref, model) in variants.items():
        for text in texts:
            assert native_ids(model, text) == ref.encode(text, add_special_tokens=False).ids, (name, text)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["wikitext", "tinystories"])
def test_whole_files(variants, which) -> None:
    """The whole WikiText-2 test file (1.3 MB, one call) and the TinyStories sample."""
    text = WIKI if which == "wikitext" else STORIES_TEXT
    names = list(variants) if which == "tinystories" else ["smollm2", "llama-spm", "llama3", "qwen2"]
    for name in names:
        ref, model = variants[name]
        assert native_ids(model, text) == ref.encode(text, add_special_tokens=False).ids, name


def test_sentencepiece_cut_at_spaces_only_where_no_merge_spans_it(tmp_path) -> None:
    """A SentencePiece word (a whole text: no pre-tokenizer) is encoded piece by piece, cut before
    each \u2581, which is exact only when no merge joins "x" + "\u2581...": a vocabulary with such a
    merge ("e" + "\u2581t") must be encoded whole, as `tokenizers` does ("\u2581th", "e\u2581t", ...)."""
    import json
    tok = tokenizer_variants()["stories260k-hf"]
    j = json.loads(tok["json"])
    j["model"]["vocab"]["e\u2581t"] = len(j["model"]["vocab"])
    j["model"]["merges"].insert(0, ["e", "\u2581t"])
    ref = Tokenizer.from_str(json.dumps(j))
    model = _edgert.model_load(str(tiny_model(tmp_path / "cross.edgt", {**tok, "json": json.dumps(j)}, 513)))
    assert ref.encode("the tree", add_special_tokens=False).tokens[:2] == ["\u2581th", "e\u2581t"]
    for text in ("the tree", "the  tree the\u2581\u2581tree", STORIES_TEXT[:20000]):
        assert native_ids(model, text) == ref.encode(text, add_special_tokens=False).ids, text[:40]


@pytest.mark.slow
def test_wikitext_lines_every_variant(variants) -> None:
    lines = [ln for ln in WIKI.split("\n") if ln]
    for name, (ref, model) in variants.items():
        want = [e.ids for e in ref.encode_batch(lines, add_special_tokens=False)]
        got = [native_ids(model, ln) for ln in lines]
        bad = [ln for ln, g, w in zip(lines, got, want) if g != w]
        assert not bad, (name, len(bad), bad[:3])


@pytest.mark.slow
def test_random_unicode_strings(variants) -> None:
    texts = random_strings(N_RANDOM, seed=13)
    for name, (ref, model) in variants.items():
        want = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
        bad = [t for t, w in zip(texts, want) if native_ids(model, t) != w]
        assert not bad, (name, len(bad), [repr(t) for t in bad[:3]])
        # decode(encode(text)) as tokenizers decodes the same ids
        for t, ids in list(zip(texts, want))[:500]:
            assert _edgert.detokenize(model, ids) == ref.decode(ids, skip_special_tokens=False), (name, t)


def test_special_tokens_as_text_when_not_parsed(variants) -> None:
    ref, model = variants["smollm2"]
    text = "<|im_start|>user\nHi<|im_end|>"
    ref.encode_special_tokens = True
    try:
        want = ref.encode(text, add_special_tokens=False).ids
    finally:
        ref.encode_special_tokens = False
    assert native_ids(model, text, 0) == want
    assert native_ids(model, text) != want  # parsed, <|im_start|> is one id


def test_add_special_follows_the_file(variants, stories_edgt) -> None:
    stories = _edgert.model_load(str(stories_edgt))
    ids = native_ids(stories, "Once upon a time", _edgert.TOKENIZE_ADD_SPECIAL)
    assert ids[0] == 1 and ids[1:] == native_ids(stories, "Once upon a time")  # add_bos: true
    _, smol = variants["smollm2"]
    assert native_ids(smol, "Hi", _edgert.TOKENIZE_ADD_SPECIAL) == native_ids(smol, "Hi")  # add_bos: false


def test_invalid_utf8_is_a_typed_error(variants) -> None:
    cases = random_invalid_utf8(400, seed=5)
    for name, (_, model) in variants.items():
        for b in cases:
            with pytest.raises(TokenizerError, match="not valid UTF-8"):
                native_ids(model, b)
    # the Python layer (tokenizers reference path) refuses the same inputs
    ref_tok = EdgertTokenizer.from_metadata({"tokenizer": {"json": tokenizer_variants()["gpt2"]["json"]}})
    for b in cases[:50]:
        with pytest.raises(TokenizerError):
            ref_tok.encode(b)
    with pytest.raises(TokenizerError):  # a lone surrogate in a str
        native_ids(variants["gpt2"][1], "a\ud800b")


def test_ids_out_of_range_are_typed_errors(variants) -> None:
    _, model = variants["smollm2"]
    vocab = _edgert.model_get_info(model)["vocab_size"]
    for bad in (-1, vocab, 2**31 - 1):
        with pytest.raises(TokenIdError):
            _edgert.detokenize(model, [1, bad])
        with pytest.raises(TokenIdError):
            _edgert.token_to_piece(model, bad)
        d = _edgert.detokenizer_new(model)
        with pytest.raises(TokenIdError):
            _edgert.detokenizer_feed(d, bad)


def test_unsupported_tokenizer_is_a_typed_error(tmp_path) -> None:
    import json
    tok = tokenizer_variants()["gpt2"]
    for change, what in (({"model": {"type": "Unigram", "vocab": []}}, "Unigram"),
                         ({"normalizer": {"type": "Lowercase"}}, "Lowercase"),
                         ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"},
                                             "behavior": "Isolated", "invert": False}}, "Split")):
        j = json.loads(tok["json"])
        j.update(change)
        path = tiny_model(tmp_path / f"{what}.edgt", {**tok, "json": json.dumps(j)}, 50257)
        model = _edgert.model_load(str(path))  # loads and runs on ids all the same
        with pytest.raises(UnsupportedModelError, match=what):
            native_ids(model, "hello")


def test_streaming_never_splits_a_character(variants) -> None:
    """Each piece is whole characters; the pieces concatenate to the full decode, and equal
    what edgert.tokenizer's DecodeStream-based TextStream yields."""
    texts = random_strings(300, seed=3) + ["héllo wörld 😀👩\u200d💻 中文", WIKI[:3000]]
    for name, (ref, model) in variants.items():
        py = EdgertTokenizer(hf=ref, bos_token_id=None)
        for text in texts:
            ids = ref.encode(text, add_special_tokens=False).ids
            if not ids:
                continue
            context, gen = ids[:3], ids[3:]
            d = _edgert.detokenizer_new(model, context)
            pieces = [_edgert.detokenizer_feed(d, t) for t in gen]
            stream = py.stream(context)
            assert pieces == [stream.step(t) for t in gen], (name, text)
            joined = "".join(pieces) + _edgert.detokenizer_flush(d)
            full, head = ref.decode(ids), ref.decode(context)
            if full.startswith(head):
                assert joined == full[len(head):], (name, text)


def test_token_to_piece_bytes(variants) -> None:
    _, spm = variants["llama-spm"]
    ref = variants["llama-spm"][0]
    assert _edgert.token_to_piece(spm, ref.token_to_id("<0xE2>")) == b"\xe2"  # part of a character
    assert _edgert.token_to_piece(spm, ref.token_to_id("\u2581the")) == b" the"
    ref2, gpt2 = variants["gpt2"]
    ids = ref2.encode("héllo 😀", add_special_tokens=False).ids
    assert b"".join(_edgert.token_to_piece(gpt2, i) for i in ids) == "héllo 😀".encode()


# ---- Unicode tables ------------------------------------------------------------------------------

PROBE_SOURCES = ["tokenizer/unicode_props.cpp", "tokenizer/pre_tokenizer.cpp", "tokenizer/bpe.cpp",
                 "tokenizer/tokenizer.cpp", "core/json.cpp", "core/message_text.cpp"]


def build_probe(out: Path, compiler: str = "g++", extra: tuple[str, ...] = ()) -> Path:
    src = REPO_ROOT / "native" / "src"
    exe = out / "tokenizer_probe"
    subprocess.run([compiler, "-std=c++17", "-O2", *extra, f"-I{src}", f"-I{REPO_ROOT / 'native' / 'include'}",
                    *[str(src / s) for s in PROBE_SOURCES],
                    str(REPO_ROOT / "native" / "tools" / "tokenizer_probe.cpp"), "-o", str(exe)],
                   check=True)
    return exe


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return build_probe(tmp_path_factory.mktemp("probe"))


def onig_set(pattern: str) -> set[int]:
    """Code points the reference's regex engine matches with pattern (one char each): planes 0-3
    and 14 (where every assigned letter, number and space lives) and every 97th code point of
    the rest (private use and unassigned)."""
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000 and
           (c < 0x40000 or 0xE0000 <= c < 0xF0000 or c % 97 == 0)]
    text = "".join(map(chr, cps))
    kept = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)
    # offsets are in characters of text; what "removed" dropped is the matched set
    unmatched = set()
    for _, (a, b) in kept:
        unmatched.update(cps[a:b])
    return set(cps) - unmatched


@pytest.mark.slow
def test_unicode_classes_equal_the_reference_regex_engine(probe) -> None:
    r = subprocess.run([str(probe), "classes"], capture_output=True, text=True, check=True)
    native = {1: set(), 2: set(), 4: set()}
    for line in r.stdout.split("\n"):
        if line:
            cp, f = map(int, line.split())
            for bit in native:
                if f & bit:
                    native[bit].add(cp)
    checked = {c for c in range(1, 0x110000) if c < 0x40000 or 0xE0000 <= c < 0xF0000 or c % 97 == 0}
    for bit, pattern in ((1, r"\p{L}"), (2, r"\p{N}"), (4, r"\s")):
        ref = onig_set(pattern)
        native[bit] &= checked
        assert native[bit] == ref, (pattern, sorted(native[bit] ^ ref)[:20])


@pytest.mark.slow
def test_nfc_equals_the_reference(probe, tmp_path) -> None:
    import unicodedata2 as ud
    texts = [chr(c) for c in range(0x80, 0x30000) if not 0xD800 <= c < 0xE000]
    # every combining mark next to one of lower and one of higher class (reordering), and every
    # canonical decomposition written out (composition): where Unicode versions differ
    marks = [chr(c) for c in range(0x300, 0x30000) if ud.combining(chr(c)) > 1]
    texts += ["a" + m + "\u0334" for m in marks] + ["a\u0345" + m for m in marks]
    texts += [ud.normalize("NFD", chr(c)) + "\u0301" for c in range(0xC0, 0x30000)
              if ud.decomposition(chr(c)) and not ud.decomposition(chr(c)).startswith("<")]
    texts += random_strings(5000, seed=11)
    (tmp_path / "in").write_bytes("\0".join(texts).encode())
    r = subprocess.run([str(probe), "nfc", str(tmp_path / "in")], capture_output=True, check=True)
    got = r.stdout.decode("utf-8").split("\0")
    nfc = normalizers.NFC()
    bad = [t for t, g in zip(texts, got) if g != nfc.normalize_str(t)]
    assert len(got) == len(texts) and not bad, [ascii(t) for t in bad[:10]]


def test_unicode_tables_regenerate_identically() -> None:
    r = subprocess.run([sys.executable, str(REPO_ROOT / "native" / "tools" / "gen_unicode_tables.py"),
                        "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_parity_on_aarch64_under_qemu(tmp_path) -> None:
    """The tokenizer cross-built for arm64 and run under qemu-aarch64 gives the reference's ids
    (fixture strings, random strings, a WikiText slice) for a byte-level and a SentencePiece
    vocabulary."""
    import shutil
    assert shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64"), \
        "apt-get install g++-aarch64-linux-gnu qemu-user"
    exe = build_probe(tmp_path, "aarch64-linux-gnu-g++")
    texts = [t for g in (GPT2_GGUF, SPM_GGUF) for t, _ in llama_cpp_cases(g)]
    texts += random_strings(1000, seed=17) + [WIKI[:20000]]
    (tmp_path / "in").write_bytes("\0".join(texts).encode())
    for name in ("smollm2", "llama-spm", "qwen2"):
        tok = tokenizer_variants()[name]
        (tmp_path / "t.json").write_text(tok["json"])
        r = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe), "encode",
                            str(tmp_path / "t.json"), str(tmp_path / "in")],
                           capture_output=True, text=True, check=True, timeout=600)
        got = r.stdout.split("\n")
        ref = Tokenizer.from_str(tok["json"])
        want = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
        bad = [t for t, g, w in zip(texts, got, want) if [int(x) for x in g.split()] != w]
        assert len(got) >= len(texts) and not bad, (name, [repr(t) for t in bad[:3]])
