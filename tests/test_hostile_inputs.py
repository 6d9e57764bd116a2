"""Hostile model files: every input the fuzzers found (fuzz/python/corpus/<target>/regress-*) gets a
typed error naming the field and value, never a raw Python/Rust exception, a hang or unbounded
memory; and a tokenizer whose regex backtracks catastrophically is refused when the file loads.

Each regress-* file is named for the exception it raised before the fix (the `hang-` ones ran
until killed); the expectations below say which field the error must now name."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, STORIES
import edgert
from edgert.errors import EdgertError, ModelFormatError, TokenizerError

FUZZ = REPO_ROOT / "fuzz" / "python"
CORPUS = FUZZ / "corpus"
sys.path.insert(0, str(FUZZ))

# regress file -> a pattern its error message must contain (the field, and the value where short)
EXPECTED = {
    "gguf/regress-hang-block_count-2p31": r"llama\.block_count = 2147483647 is outside \[1, 1024\]",
    "gguf/regress-hang-block_count-2p63": r"llama\.block_count = 9223372036854775807 is outside",
    "gguf/regress-RecursionError-nested-arrays": r"arrays nested deeper than 8 levels",
    "gguf/regress-ZeroDivisionError-head_count": r"llama\.attention\.head_count = False must be an integer",
    "gguf/regress-OverflowError-head_count_kv-inf": r"llama\.attention\.head_count_kv = inf",
    "gguf/regress-ValueError-eos_token_id-string": r"tokenizer\.ggml\.eos_token_id = 'gpt2' must be an integer",
    "gguf/regress-IndexError-tokens-not-a-list": r"tokenizer\.ggml\.tokens = 'x' must be a list",
    "gguf/regress-UnicodeEncodeError-token-not-utf8": r"tokenizer\.ggml\.tokens\[38\] = .* is not a valid UTF-8",
    "gguf/regress-TypeError-token-not-utf8": r"tokenizer\.ggml\.tokens\[198\] = .* is not a valid UTF-8",
    "gguf/regress-Exception-bpe-merge-out-of-vocab": r"llama\.attention\.head_count = 2147483647",
    "gguf/regress-atheris-UnicodeEncodeError-surrogate-metadata": r"tokenizer\.chat_template = .* not valid UTF-8",
    "hf_config/regress-AttributeError": r"config\.json: rope_scaling = 2 must be an object",
    "hf_config/regress-KeyError": r"config\.json: intermediate_size is missing",
    "hf_config/regress-MemoryError": r"config\.json: hidden_size = 2147483648 is outside \[1, 65536\]",
    "hf_config/regress-OverflowError": r"config\.json: num_key_value_heads = 1e-30 must be an integer",
    "hf_config/regress-TypeError": r"config\.json: hidden_size = 1e\+300 is outside",
    "hf_config/regress-UnicodeDecodeError": r"generation_config\.json: cannot read JSON \(UnicodeDecodeError",
    "hf_config/regress-ValueError": r"generation_config\.json eos_token_id\[0\] = nan must be an integer",
    "hf_config/regress-ZeroDivisionError": r"config\.json: num_attention_heads = False must be an integer",
    "safetensors/regress-KeyError": r"model\.norm\.weight\.shape = \{\} must be a list",
    "safetensors/regress-OverflowError": r"gate_proj\.weight\.shape\[0\] = inf must be an integer",
    "safetensors/regress-TypeError": r"tensor 'model\.layers\.0\.mlp\.up_proj\.weight' = 0 must be an object",
    "safetensors/regress-ValueError": r"down_proj\.weight\.shape = '\\ud800' must be a list",
    "safetensors/regress-struct.error": r"embed_tokens\.weight\.shape\[0\] = 10+ is outside",
    "tokenizer_json/regress-AttributeError": r"tokenizer\.json failed: Exception: data did not match",
    "tokenizer_json/regress-Exception": r"tokenizer\.json failed: Exception: invalid type: null",
    "tokenizer_json/regress-KeyError": r"tokenizer\.json failed: Exception: missing field `id`",
    "tokenizer_json/regress-PanicException": r"tokenizer\.json failed: PanicException: slice index",
    "tokenizer_json/regress-PanicException-catastrophic-regex":
        r"tokenizer\.json: tokenizing the probe text .* failed: PanicException: Onig",
    "tokenizer_json/regress-TypeError": r"tokenizer\.json failed: Exception: invalid type: floating point",
    "tokenizer_json/regress-UnicodeDecodeError": r"tokenizer\.json: not UTF-8 text",
    "tokenizer_json/regress-atheris-JSONDecodeError-empty": r"tokenizer\.json is not valid JSON",
    "llama2c/regress-IndexError-vocab_size-1": r"vocab_size = 1; a llama2\.c vocabulary holds at least",
}
_TARGETS = ("gguf", "llama2c", "hf_config", "safetensors", "tokenizer_json")


def _convert_input(target: str):
    if target == "gguf":
        import fuzz_gguf
        return fuzz_gguf.convert_input
    if target == "llama2c":
        import fuzz_llama2c
        return fuzz_llama2c.convert_input
    import fuzz_hf
    return fuzz_hf.CONVERT_INPUT[target]


def test_every_regression_input_has_an_expectation() -> None:
    found = {f"{p.parent.name}/{p.name}" for t in _TARGETS for p in (CORPUS / t).glob("regress-*")}
    assert found == set(EXPECTED), "add the new regress-* inputs to EXPECTED (or remove stale entries)"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_regression_input_gets_a_typed_error_naming_the_field(name: str) -> None:
    target = name.split("/")[0]
    start = time.monotonic()

    def hang(*_: object) -> None:
        raise TimeoutError(f"{name} was not refused within 20 s (the bug came back?)")
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        with pytest.raises(EdgertError) as info:
            _convert_input(target)((CORPUS / name).read_bytes())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 10, "an input must be refused quickly"
    assert info.value.unexpected is None, f"mapped at the boundary, not fixed at the root: {info.value}"
    assert isinstance(info.value, ModelFormatError)
    assert re.search(EXPECTED[name], str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("target", _TARGETS + ("chat_template",))
def test_whole_corpus_replays_without_findings(target: str) -> None:
    """Seeds and regressions through the fuzz target itself (conversion, then the converted
    file's tokenizer and chat template): nothing but typed errors."""
    if target == "chat_template":
        import fuzz_chat_template
        run = fuzz_chat_template.test_one_input
    elif target in ("gguf", "llama2c"):
        run = __import__(f"fuzz_{target}").test_one_input
    else:
        import fuzz_hf
        run = fuzz_hf.TARGETS[target]
    files = sorted(p for p in (CORPUS / target).iterdir() if p.is_file())
    assert files
    for p in files:
        run(p.read_bytes())


def test_seeds_convert(tmp_path: Path) -> None:
    """The seeds are valid inputs (a seed that failed early would leave the fuzzer blind)."""
    import fuzz_gguf
    import fuzz_hf
    import fuzz_llama2c
    for target, f in (("gguf", fuzz_gguf.convert_input), ("llama2c", fuzz_llama2c.convert_input),
                      *fuzz_hf.CONVERT_INPUT.items()):
        for p in sorted((CORPUS / target).iterdir()):
            if p.name.startswith("refused-"):
                with pytest.raises(ModelFormatError):
                    f(p.read_bytes())
            elif not p.name.startswith("regress-"):
                assert f(p.read_bytes()).stat().st_size > 0, p


# -- tokenizers --------------------------------------------------------------------------------------

def _catastrophic_tokenizer_json() -> str:
    tj = json.loads((STORIES / "hf" / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated",
                           "invert": False}
    return json.dumps(tj)


def test_catastrophic_regex_is_refused_at_load() -> None:
    from edgert.tokenizer import Tokenizer
    meta = {"tokenizer": {"json": _catastrophic_tokenizer_json(), "bos_token_id": 1, "eos_token_ids": [2]}}
    start = time.monotonic()
    with pytest.raises(ModelFormatError, match="probe text .*PanicException"):
        Tokenizer.from_metadata(meta)
    assert time.monotonic() - start < 10


def test_a_panic_while_tokenizing_is_a_tokenizer_error() -> None:
    """Should a panicking regex get past the probe, encode raises TokenizerError (an Exception),
    not PanicException (a BaseException that `except Exception` misses)."""
    from tokenizers import Tokenizer as HFTokenizer

    from edgert.tokenizer import Tokenizer
    tok = Tokenizer(hf=HFTokenizer.from_str(_catastrophic_tokenizer_json()), bos_token_id=1)
    assert tok.encode("hello") == tok.encode("hello")
    with pytest.raises(TokenizerError, match="PanicException"):
        tok.encode("a" * 31 + "b")
    with pytest.raises(TokenizerError):
        tok.decode([-1])
    with pytest.raises(TokenizerError):
        tok.token_text(2**40)


def test_llm_refuses_a_model_file_with_a_catastrophic_tokenizer(stories_edgt: Path, tmp_path: Path) -> None:
    from converters.edgt_file import EdgtWriter, TensorSpec, read_edgt
    from edgert import LLM
    src = read_edgt(stories_edgt)
    meta = dict(src.metadata, tokenizer=dict(src.metadata["tokenizer"], json=_catastrophic_tokenizer_json()))
    specs = [TensorSpec(e.name, e.dtype, e.shape) for e in src.tensors.values()]
    bad = tmp_path / "bad-tokenizer.edgt"
    with EdgtWriter(bad, meta, specs) as w:
        for s in specs:
            w.write(s.name, src.raw(s.name))
    with pytest.raises(ModelFormatError, match="tokenizer.json.*probe text"):
        LLM(bad)
    r = subprocess.run([sys.executable, "-m", "edgert", "run", str(bad), "hi"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("edgert: error:") and "Traceback" not in r.stderr
    assert "panicked" not in r.stderr, "the probe keeps Rust's panic message off stderr"


def test_conversion_memory_is_bounded_by_the_file(tmp_path: Path) -> None:
    """The block_count and hidden_size inputs used to hang growing memory / ask for 4 GiB: in a
    child with 1 GiB of address space they are refused without a MemoryError."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY)); "
            f"sys.path.insert(0, {str(FUZZ)!r}); import fuzz_gguf, fuzz_hf\n"
            "from edgert.errors import ModelFormatError\n"
            "for f, name in ((fuzz_gguf.convert_input, 'gguf/regress-hang-block_count-2p31'),"
            " (fuzz_hf.CONVERT_INPUT['hf_config'], 'hf_config/regress-MemoryError')):\n"
            f"    data = open({str(CORPUS)!r} + '/' + name, 'rb').read()\n"
            "    try: f(data)\n"
            "    except ModelFormatError: print('refused', name)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("refused") == 2


def _with_metadata(src_path: Path, dst: Path, **changes) -> Path:
    from converters.edgt_file import EdgtWriter, TensorSpec, read_edgt
    src = read_edgt(src_path)
    specs = [TensorSpec(e.name, e.dtype, e.shape) for e in src.tensors.values()]
    with EdgtWriter(dst, dict(src.metadata, **changes), specs) as w:
        for s in specs:
            w.write(s.name, src.raw(s.name))
    return dst


def test_odd_metadata_values_are_typed_errors_or_ignored(stories_edgt: Path, tmp_path: Path) -> None:
    """The metadata JSON of an .edgt file is the file's: a `tokenizer` that is not an object is a
    ModelFormatError when the model opens; `edgert info` shows what it can of odd report fields."""
    from edgert import LLM
    bad = _with_metadata(stories_edgt, tmp_path / "tok.edgt", tokenizer="not an object")
    with pytest.raises(ModelFormatError, match="tokenizer"):
        LLM(bad)
    from edgert.tokenizer import Tokenizer
    with pytest.raises(ModelFormatError, match="no tokenizer object"):
        Tokenizer.from_metadata({"tokenizer": "not an object"})
    odd = _with_metadata(stories_edgt, tmp_path / "odd.edgt", quantization=[1], provenance="x",
                         chat_template=12)
    r = subprocess.run([sys.executable, "-m", "edgert", "info", str(odd)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    with LLM(odd) as llm:
        with pytest.raises(edgert.ChatTemplateError, match="must be text"):
            llm.chat([{"role": "user", "content": "hi"}])
