"""What every atheris target in this folder shares: the bounds a run gets and what counts as a
finding.

A finding is (1) any exception that is not one of edgert's typed errors (`edgert.errors`; a Rust
PanicException, which derives from BaseException, counts too), (2) an input that runs longer than
TIMEOUT_S (libFuzzer's -timeout), or (3) memory beyond MEMORY_LIMIT: the address space is capped
with RLIMIT_AS, so an input that would allocate without bound fails with MemoryError (or a Rust
allocation abort) instead of taking the machine's memory; libFuzzer's -rss_limit_mb backs it up.

Each target is a script: `python fuzz/python/fuzz_<target>.py [libFuzzer flags] [corpus dirs or
files]`; given files it runs each once (that is how a crash is reproduced). `run.sh` runs them all.
Targets import edgert inside `instrumented()`, so atheris records Python coverage of edgert and
the converters (and of jinja2 for templates) to guide its mutations.
"""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import atheris

TIMEOUT_S = 10
MEMORY_LIMIT = 2 << 30           # bytes of address space (the interpreter and libraries use ~0.2 GiB)
RSS_LIMIT_MB = 1536

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def instrumented(*packages: str) -> contextlib.AbstractContextManager:
    """Import edgert (and `packages`) inside this block so atheris instruments their bytecode."""
    return atheris.instrument_imports(include=["edgert", *packages])


def scratch_dir() -> Path:
    """A private directory for the files one input is written to (tmpfs when there is one)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="edgert-fuzz-", dir=os.environ.get("EDGERT_FUZZ_TMP", base)))
    import atexit
    atexit.register(shutil.rmtree, d, True)
    return d


class UnexpectedAtBoundary(Exception):
    """A typed error that a last-line boundary made out of an exception nobody foresaw
    (EdgertError.unexpected is set): still a finding, its root cause needs a check."""


@contextlib.contextmanager
def typed_errors_allowed() -> Iterator[None]:
    """Swallow edgert's typed errors (the expected way to refuse an input); anything else escapes
    and becomes a finding."""
    from edgert.errors import EdgertError
    try:
        yield
    except EdgertError as e:
        if getattr(e, "unexpected", None):
            raise UnexpectedAtBoundary(f"{e.unexpected} mapped at a boundary: {e}") from e
    if os.environ.get("EDGERT_FUZZ_SELFTEST") == "1":  # tests/test_fuzz_python.py: can it fail?
        raise RuntimeError("EDGERT_FUZZ_SELFTEST: every input is a finding")


def clear(d: Path) -> None:
    for p in d.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer over test_one_input with the bounds above unless the command line sets them."""
    limit_memory()
    argv = list(sys.argv)
    for flag, value in (("-timeout", TIMEOUT_S), ("-rss_limit_mb", RSS_LIMIT_MB)):
        if not any(a.startswith(flag + "=") for a in argv[1:]):
            argv.append(f"{flag}={value}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


# What a converted file is put through after a successful conversion: the runtime's Python side
# of loading it (tokenizer rebuilt from the metadata, the chat template rendered), which is where
# a hostile tokenizer.json or template in the source would surface.
PROBE_TEXT = "Hello, world! 12345 ünïcødé  \n\t<s> 日本語 \U0001F600 aaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
PROBE_MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROBE_TEXT},
                  {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Bye"}]


def exercise_edgt(path: Path) -> None:
    from edgert.chat_template import ChatTemplate
    from edgert.converters.edgt_file import read_edgt
    from edgert.tokenizer import Tokenizer
    f = read_edgt(path)
    tok = Tokenizer.from_metadata(f.metadata)
    ids = tok.encode(PROBE_TEXT)
    tok.decode(ids)
    "".join(tok.stream(ids[:3]).feed(ids[3:]))
    template = f.metadata.get("chat_template")
    if template:
        ChatTemplate(template, bos_token=tok.bos_token, eos_token=tok.eos_token).render(PROBE_MESSAGES)
