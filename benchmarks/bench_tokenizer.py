"""Tokenizer speed: the native tokenizer (libedgert's edgert_tokenize, through edgert._edgert)
against Hugging Face `tokenizers` (the reference, single thread: RAYON_NUM_THREADS=1 and one
text per call), on the same texts, in interleaved rounds (A, B, A, B, ...) so a machine that
drifts affects both alike. Reports the median per text and the ratio, with /proc/loadavg before
and after. Both sides are first checked to give the same ids.

    python benchmarks/bench_tokenizer.py [--rounds 5] [--json out.json]

Texts: the whole WikiText-2 test file as one call, the same file one line per call (what a
chat prompt costs), and the TinyStories sample. Tokenizers: SmolLM2 (byte-level BPE, Digits +
GPT-2 regex) and TinyLlama/Llama 2 (SentencePiece BPE with byte fallback), as the shared models'
files carry them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests")]  # tests/tokenizer_cases.py builds the tokenizers and models

from tokenizers import Tokenizer  # noqa: E402

from edgert import _edgert  # noqa: E402
from tokenizer_cases import DATA, tiny_model, tokenizer_variants  # noqa: E402


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    wiki = (DATA / "text" / "wikitext-2-raw-test.txt").read_text(encoding="utf-8")
    stories = (DATA / "text" / "tinystories-valid-sample.txt").read_text(encoding="utf-8")
    texts = {"wikitext (1 call)": [wiki], "wikitext (per line)": [ln for ln in wiki.split("\n") if ln],
             "tinystories (1 call)": [stories]}
    results = []
    before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("smollm2", "llama-spm"):
            tok = tokenizer_variants()[name]
            ref = Tokenizer.from_str(tok["json"])
            model = _edgert.model_load(str(tiny_model(Path(tmp) / f"{name}.edgt", tok,
                                                      ref.get_vocab_size(with_added_tokens=True))))
            native = lambda batch: [_edgert.tokenize(model, t, _edgert.TOKENIZE_PARSE_SPECIAL) for t in batch]
            hf = lambda batch: [ref.encode(t, add_special_tokens=False).ids for t in batch]
            for label, batch in texts.items():
                assert native(batch) == hf(batch), f"{name} {label}: native ids differ from tokenizers"
                times = {"native": [], "tokenizers": []}
                for _ in range(args.rounds):
                    for side, fn in (("native", native), ("tokenizers", hf)):
                        t0 = time.perf_counter()
                        fn(batch)
                        times[side].append(time.perf_counter() - t0)
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {"tokenizer": name, "text": label, "native_s": med["native"],
                       "tokenizers_s": med["tokenizers"], "speedup": med["tokenizers"] / med["native"],
                       "samples": times}
                results.append(row)
                print(f"{name:10s} {label:22s} native {med['native'] * 1e3:9.1f} ms   tokenizers "
                      f"{med['tokenizers'] * 1e3:9.1f} ms   native is {row['speedup']:.2f}x", flush=True)
    after = loadavg()
    print(f"/proc/loadavg before: {before}\n/proc/loadavg after:  {after}")
    if args.json:
        args.json.write_text(json.dumps({"loadavg_before": before, "loadavg_after": after,
                                         "rounds": args.rounds, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
