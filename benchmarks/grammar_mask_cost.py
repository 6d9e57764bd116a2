"""Per-token cost of a structured-output token mask on a real vocabulary, for each grammar engine
edgert could use (llguidance, xgrammar, outlines-core), measured the same way.

For each engine and JSON schema: compile time, then the time to compute the next-token bitmask
(int32 words, bit t%32 of word t//32 = token t allowed) at every step of a valid JSON answer
tokenized with the model's own tokenizer, advancing the matcher by each token. Reported: median
and p90 microseconds per mask, and (with --decode-tok-s) that as a share of one decode step.

    python benchmarks/grammar_mask_cost.py models/smollm2.edgt [--repeats 5] [--json]

It chose edgert's engine (README, "Structured output"). Engines that are not installed are
reported as such; xgrammar needs torch and transformers, which the server extra does not pull in.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "email": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            "address": {"type": "object", "properties": {
                "city": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["city"]},
        },
        "required": ["name", "age", "tags", "address"],
    },
    "any_json_object": {"type": "object"},
}

ANSWERS = {
    "person": {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org",
               "tags": ["mathematician", "writer"], "address": {"city": "London", "zip": "W1"}},
    "any_json_object": {"title": "Notes", "items": [1, 2.5, True, None], "nested": {"k": "v é"}},
}


def _vocab_strings(hf: Any, n_vocab: int) -> list[str]:
    return [hf.id_to_token(i) or "" for i in range(n_vocab)]


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE's printable stand-ins for bytes, inverted (character -> byte)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def engine_llguidance(tok_json: str, n_vocab: int, eos: int, schema: dict) -> tuple[Callable, Callable, Callable]:
    import llguidance
    t0 = time.perf_counter()
    tok = llguidance.LLTokenizer(tok_json, n_vocab=n_vocab, eos_token=eos)
    t1 = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema))
    matcher = llguidance.LLMatcher(tok, grammar)
    compile_s = time.perf_counter() - t0
    mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def fill() -> None:
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)

    def accept(t: int) -> None:
        assert matcher.consume_token(t), matcher.get_error()
    return fill, accept, lambda: (t1 - t0, compile_s - (t1 - t0))


def engine_xgrammar(tok_json: str, n_vocab: int, eos: int, schema: dict) -> tuple[Callable, Callable, Callable]:
    import xgrammar as xgr
    from tokenizers import Tokenizer
    t0 = time.perf_counter()
    hf = Tokenizer.from_str(tok_json)
    info = xgr.TokenizerInfo(_vocab_strings(hf, n_vocab), vocab_type=xgr.VocabType.BYTE_LEVEL,
                             vocab_size=n_vocab, stop_token_ids=[eos])
    t1 = time.perf_counter()
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(schema))
    matcher = xgr.GrammarMatcher(compiled)
    compile_s = time.perf_counter() - t0
    bitmask = xgr.allocate_token_bitmask(1, n_vocab)

    def fill() -> None:
        matcher.fill_next_token_bitmask(bitmask)

    def accept(t: int) -> None:
        assert matcher.accept_token(t)
    return fill, accept, lambda: (t1 - t0, compile_s - (t1 - t0))


def engine_outlines_core(tok_json: str, n_vocab: int, eos: int, schema: dict) -> tuple[Callable, Callable, Callable]:
    import outlines_core as oc
    from tokenizers import Tokenizer
    t0 = time.perf_counter()
    hf = Tokenizer.from_str(tok_json)
    to_byte = _byte_level_decoder()
    vocab: dict[bytes, list[int]] = {}
    for i, s in enumerate(_vocab_strings(hf, n_vocab)):
        if i == eos or not s:
            continue
        vocab.setdefault(bytes(to_byte[c] for c in s) if all(c in to_byte for c in s)
                         else s.encode(), []).append(i)
    vocabulary = oc.Vocabulary(eos, vocab)
    t1 = time.perf_counter()
    index = oc.Index(oc.json_schema.build_regex_from_schema(json.dumps(schema)),
                     vocabulary)
    guide = oc.Guide(index)
    compile_s = time.perf_counter() - t0
    mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def fill() -> None:
        guide.write_mask_into(mask.ctypes.data, mask.size, 4)

    def accept(t: int) -> None:
        guide.advance(t)
    return fill, accept, lambda: (t1 - t0, compile_s - (t1 - t0))


ENGINES = {"llguidance": engine_llguidance, "xgrammar": engine_xgrammar,
           "outlines-core": engine_outlines_core}


def measure(model_path: str, repeats: int) -> dict[str, Any]:
    from edgert.model import Model
    from edgert.tokenizer import Tokenizer
    model = Model(model_path)
    tok = Tokenizer.from_metadata(model.metadata)
    n_vocab = model.info.vocab_size
    eos = tok.eos_token_ids[0]
    tok_json = model.metadata["tokenizer"]["json"]
    out: dict[str, Any] = {"model": model_path, "vocab_size": n_vocab, "engines": {}}
    for name, make in ENGINES.items():
        res: dict[str, Any] = {}
        try:
            for sname, schema in SCHEMAS.items():
                ids = tok.encode(json.dumps(ANSWERS[sname], ensure_ascii=False), add_bos=False)
                per_mask: list[float] = []
                compile_s: list[float] = []
                setup_s: list[float] = []
                for _ in range(repeats):
                    fill, accept, comp = make(tok_json, n_vocab, eos, schema)
                    setup, compiled = comp()
                    setup_s.append(setup)
                    compile_s.append(compiled)
                    for t in ids:
                        t0 = time.perf_counter()
                        fill()
                        per_mask.append(time.perf_counter() - t0)
                        accept(t)
                per_mask.sort()
                res[sname] = {"steps": len(ids), "vocab_setup_ms": statistics.median(setup_s) * 1e3,
                              "compile_ms": statistics.median(compile_s) * 1e3,
                              "mask_us_median": statistics.median(per_mask) * 1e6,
                              "mask_us_p90": per_mask[int(0.9 * (len(per_mask) - 1))] * 1e6}
        except ImportError as e:
            res = {"unavailable": str(e)}
        except Exception as e:  # an engine that cannot handle the vocabulary is a result too
            res = {"failed": f"{type(e).__name__}: {e}"}
        out["engines"][name] = res
    model.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tok-s", type=float, default=0.0,
                    help="plain decode speed, to print the mask as a share of a decode step")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    r = measure(args.model, args.repeats)
    r["loadavg"] = load
    if args.json:
        json.dump(r, sys.stdout, indent=2)
        print()
        return 0
    print(f"vocab {r['vocab_size']}, loadavg {load}")
    for name, res in r["engines"].items():
        if "unavailable" in res or "failed" in res:
            print(f"{name:14s} {res}")
            continue
        for sname, s in res.items():
            share = ""
            if args.decode_tok_s > 0:
                share = f"  {s['mask_us_median'] * 1e-6 * args.decode_tok_s * 100:.1f}% of a decode step"
            print(f"{name:14s} {sname:16s} vocab setup {s['vocab_setup_ms']:7.1f} ms  "
                  f"schema compile {s['compile_ms']:8.1f} ms  mask median "
                  f"{s['mask_us_median']:8.1f} us  p90 {s['mask_us_p90']:8.1f} us ({s['steps']} steps){share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
