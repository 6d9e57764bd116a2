#!/usr/bin/env python3
"""engines.py — one engine, one model, one process: the worker that run_bench.py starts for every
measurement, so that engines never share a process (peak RSS, thread pools, allocator state).

Each adapter gives the protocol of edgert/bench.py (loaded from this repo by path, so every engine
is timed by the same code) a greedy `generate(prompt_ids, n_new)` whose first token comes right
after the prompt's evaluation and each later one after one single-token decode step:

  llama.cpp     llama-cpp-python's Llama: eval() of the ids (n_batch = n_ubatch = 512, logits of
                the last position only), argmax over llama_get_logits_ith(-1) in numpy.
  ct2           CTranslate2 Generator.generate_tokens (int8, greedy, EOS disabled so every run
                makes exactly n_new tokens).
  ort           onnxruntime-genai Generator: append_tokens(prompt), generate_next_token() (greedy;
                min_length = max_length so EOS cannot stop it early). A Generator per call:
                its creation (KV buffers) counts in the TTFT, as it would for a user.
  edgert        edgert's Context.eval + argmax (edgert/bench.py).

Usage (run_bench.py does this): python engines.py ENGINE MODEL_PATH [options] → one JSON line.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent


def load_protocol() -> Any:
    """edgert/bench.py of this checkout, without importing the edgert package (which may not be
    installed in the peers' interpreter)."""
    spec = importlib.util.spec_from_file_location("edgert_bench_protocol", REPO / "edgert" / "bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# llama.cpp's ggml_type ids for the KV cache (type_k / type_v).
GGML_KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}


class LlamaCppEngine:
    def __init__(self, path: str, n_ctx: int, n_threads: int, n_threads_batch: int,
                 kv_type: str = "f16", flash_attn: bool = True, n_batch: int = 512) -> None:
        import numpy as np
        import llama_cpp
        from llama_cpp import Llama

        self._np = np
        kw: dict[str, Any] = {}
        if kv_type != "f16":
            kw["type_k"] = kw["type_v"] = GGML_KV_TYPES[kv_type]
        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads,
                         n_threads_batch=n_threads_batch, n_batch=n_batch, n_ubatch=n_batch,
                         logits_all=False, flash_attn=flash_attn, n_gpu_layers=0,
                         use_mmap=True, verbose=False, seed=0, **kw)
        self.vocab_size = self.llm.n_vocab()
        self.info = {"llama_cpp_python": llama_cpp.__version__, "flash_attn": flash_attn,
                     "kv_type": kv_type, "n_ctx": n_ctx, "n_batch": n_batch,
                     "system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}

    def _argmax_last(self) -> int:
        ptr = self.llm._ctx.get_logits_ith(-1)
        return int(self._np.argmax(self._np.ctypeslib.as_array(ptr, shape=(self.vocab_size,))))

    def generate(self, prompt: Sequence[int], n_new: int) -> Iterator[int]:
        self.llm.reset()  # n_tokens = 0: eval() then drops the whole cache before appending
        self.llm.eval(list(prompt))
        tok = self._argmax_last()
        yield tok
        for _ in range(n_new - 1):
            self.llm.eval([tok])
            tok = self._argmax_last()
            yield tok

    def close(self) -> None:
        self.llm.close()


class CT2Engine:
    def __init__(self, path: str, n_threads: int, compute_type: str = "int8") -> None:
        import ctranslate2

        self.gen = ctranslate2.Generator(path, device="cpu", compute_type=compute_type,
                                         intra_threads=n_threads, inter_threads=1)
        vocab_file = Path(path) / "vocabulary.json"
        if vocab_file.exists():
            self.vocab = json.loads(vocab_file.read_text())
        else:
            self.vocab = (Path(path) / "vocabulary.txt").read_text().splitlines()
        self.vocab_size = len(self.vocab)
        self.info = {"ctranslate2": ctranslate2.__version__, "compute_type": compute_type}

    def generate(self, prompt: Sequence[int], n_new: int) -> Iterator[int]:
        toks = [self.vocab[i] for i in prompt]
        # max_length counts generated tokens only (include_prompt_in_result=False here); an
        # empty end_token list means no EOS, so the length is exact.
        for step in self.gen.generate_tokens(toks, max_length=n_new, min_length=n_new,
                                             sampling_topk=1, end_token=[]):
            yield step.token_id

    def close(self) -> None:
        del self.gen


class OrtGenAIEngine:
    def __init__(self, path: str, n_threads: int) -> None:
        import numpy as np
        import onnxruntime_genai as og

        self._np, self._og = np, og
        cfg = og.Config(path)
        cfg.clear_providers()
        cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": n_threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(cfg)
        meta = json.loads((Path(path) / "genai_config.json").read_text())
        self.vocab_size = int(meta["model"]["vocab_size"])
        self.info = {"onnxruntime_genai": og.__version__}

    def generate(self, prompt: Sequence[int], n_new: int) -> Iterator[int]:
        og, np = self._og, self._np
        params = og.GeneratorParams(self.model)
        total = len(prompt) + n_new
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        g = og.Generator(self.model, params)
        g.append_tokens(np.asarray(prompt, dtype=np.int32))
        for _ in range(n_new):
            g.generate_next_token()
            yield int(g.get_next_tokens()[0])
        del g

    def close(self) -> None:
        del self.model


def preimport(engine: str) -> None:
    """Import the engine's modules before the load timer starts: load time is the model's, not
    the interpreter's. The baseline RSS then includes the libraries."""
    import numpy  # noqa: F401
    mods = {"edgert": ["edgert", "edgert.llm", "edgert.model"], "llama.cpp": ["llama_cpp"],
            "ct2": ["ctranslate2"], "ort": ["onnxruntime_genai"]}[engine]
    for m in mods:
        importlib.import_module(m)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one engine on one model; print one JSON line")
    ap.add_argument("engine", choices=["edgert", "llama.cpp", "ct2", "ort"])
    ap.add_argument("model")
    ap.add_argument("--label", default="", help="model label recorded in the result")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threads-batch", type=int, default=0)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--long-prompt", type=int, default=0)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--n-ctx", type=int, default=0, help="0: what the scenarios need")
    ap.add_argument("--kv-type", default="f16",
                    help="edgert: f16|q8|q4; llama.cpp: f16|q8_0|q4_0")
    ap.add_argument("--flash-attn", default="on", choices=["on", "off"], help="llama.cpp only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    bench = load_protocol()
    p = bench.BenchParams(n_prompt=args.n_prompt, n_gen=args.n_gen, repeats=args.repeats,
                          long_prompt=args.long_prompt, depth=args.depth, seed=args.seed)
    n_ctx = args.n_ctx or p.n_ctx_needed()
    tb = args.threads_batch or args.threads
    label = args.label or os.path.basename(args.model)
    if args.engine == "edgert":
        try:  # an installed edgert first; else this checkout, if its native module is built
            import edgert._edgert  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(REPO))
            for name in [m for m in sys.modules if m == "edgert" or m.startswith("edgert.")]:
                del sys.modules[name]
        opener = lambda: bench.EdgertEngine(args.model, n_ctx, args.threads, tb, args.kv_type)
    elif args.engine == "llama.cpp":
        opener = lambda: LlamaCppEngine(args.model, n_ctx, args.threads, tb, args.kv_type,
                                        args.flash_attn == "on")
    elif args.engine == "ct2":
        opener = lambda: CT2Engine(args.model, args.threads)
    else:
        opener = lambda: OrtGenAIEngine(args.model, args.threads)
    preimport(args.engine)
    res = bench.bench_engine(args.engine, label, args.threads, opener, p,
                             extra={"n_ctx": n_ctx, "model_path": args.model})
    print(json.dumps(res.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
