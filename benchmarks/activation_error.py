"""Where does the default (int8-activation) path lose accuracy, and is it more than llama.cpp?

Against the f32 reference (edgert exact mode, f32 activations, f32 KV — it matches PyTorch on the
same weights, tests/test_logits_vs_transformers.py) over wikitext-2 test in chunks of --ctx
tokens (every position scored), it reports for each variant the mean KL divergence of the
next-token distribution, the perplexity change and top-1 agreement:

  default        int8 activations, f16 KV (the activation path alone)
  kv-q8          int8 activations, int8 KV (edgert's default: kv_type auto)
  exact:NAMES    int8 activations except the matrices named (EDGERT_EXACT_TENSORS), e.g.
                 exact:token_embd (the tied output projection), exact:ffn_down
  llama.cpp      llama-cpp-python on the same GGUF, f16 KV (with --gguf)

    python benchmarks/activation_error.py MODEL.edgt [--gguf MODEL.gguf] [--tokens 8192]
        [--variants default,kv-q8,exact:token_embd,exact:ffn_down,...]

Run it again with EDGERT_ISA=avx2 (or scalar) to compare kernel tables. Every chunk is
evaluated by the reference and every variant in the same process, so nothing large is stored.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

WIKI = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "wikitext-2-raw-test.txt"


def logsm(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--text", default=str(WIKI))
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="default,kv-q8,exact:token_embd,exact:ffn_down,"
                    "exact:ffn_gate;ffn_up,exact:attn_q;attn_k;attn_v,exact:attn_output")
    args = ap.parse_args()
    from edgert.model import ContextParams, Model
    from edgert.tokenizer import Tokenizer

    ref_model = Model(args.model, exact=True)
    tok = Tokenizer.from_metadata(ref_model.metadata)
    ids = tok.encode(Path(args.text).read_text(encoding="utf-8"))[:args.tokens]
    chunks = [ids[i:i + args.ctx] for i in range(0, len(ids) - 1, args.ctx) if len(ids[i:i + args.ctx]) > 1]

    def ctx_of(model: Model, kv: str):
        return model.new_context(ContextParams(n_ctx=args.ctx, kv_type=kv, n_threads=args.threads,
                                               n_threads_batch=args.threads))

    runners: dict[str, object] = {}
    for v in args.variants.split(","):
        kv = "q8" if v == "kv-q8" else "f16"
        exact = v.split(":", 1)[1].replace(";", ",") if v.startswith("exact:") else ""
        os.environ["EDGERT_EXACT_TENSORS"] = exact  # read when the model binds its weights
        m = Model(args.model)
        os.environ.pop("EDGERT_EXACT_TENSORS")
        runners[v] = ctx_of(m, kv)
    lc = None
    if args.gguf:
        import llama_cpp
        lc = llama_cpp.Llama(model_path=args.gguf, n_ctx=args.ctx, n_batch=args.ctx,
                             logits_all=True, verbose=False, n_threads=args.threads)
    ref_ctx = ctx_of(ref_model, "f32")
    names = list(runners) + (["llama.cpp"] if lc is not None else [])
    kld = {n: [] for n in names}
    nll = {n: [] for n in names + ["reference"]}
    top1 = {n: [] for n in names}
    for c in chunks:
        ref_ctx.reset()
        ref = logsm(ref_ctx.eval(c, all_logits=True))
        tgt = np.array(c[1:])
        rows = np.arange(len(c) - 1)
        nll["reference"].append(-ref[rows, tgt])
        p = np.exp(ref)
        outs = {}
        for n, ctx in runners.items():
            ctx.reset()
            outs[n] = logsm(ctx.eval(c, all_logits=True))
        if lc is not None:
            lc.reset()
            lc.eval(c)
            outs["llama.cpp"] = logsm(np.array(lc.scores[:len(c)], dtype=np.float32))
        for n, lp in outs.items():
            kld[n].append((p * (ref - lp)).sum(-1))
            nll[n].append(-lp[rows, tgt])
            top1[n].append(ref.argmax(-1) == lp.argmax(-1))
    ref_nll = np.concatenate(nll["reference"])
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{len(ids)} tokens in {len(chunks)} chunks of {args.ctx}, ISA "
          f"{os.environ.get('EDGERT_ISA', 'best')}, reference PPL {np.exp(ref_nll.mean()):.4f} "
          f"(loadavg {load})")
    for n in names:
        k = np.concatenate(kld[n])
        d = np.concatenate(nll[n]) - ref_nll
        print(f"{n:34s} KLD {k.mean():.5f} +- {k.std() / np.sqrt(len(k)):.5f}   PPL "
              f"{(np.exp(d.mean()) - 1) * 100:+.3f}% +- {d.std() / np.sqrt(len(d)) * 100:.3f}%   "
              f"top-1 {np.concatenate(top1[n]).mean() * 100:.2f}%")
    if lc is not None:
        # Paired over the same tokens: the shared part of the noise (which tokens the text holds)
        # cancels, so this error bar is far smaller than the ones above.
        lc_nll = np.concatenate(nll["llama.cpp"])
        for n in runners:
            d = np.concatenate(nll[n]) - lc_nll
            print(f"{n:34s} PPL vs llama.cpp {(np.exp(d.mean()) - 1) * 100:+.3f}% +- "
                  f"{d.std() / np.sqrt(len(d)) * 100:.3f}% (paired)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
