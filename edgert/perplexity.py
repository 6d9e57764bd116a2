"""`edgert perplexity MODEL FILE`: perplexity of a text, and the KL divergence of next-token
distributions against a stored reference run, for judging KV-cache types.

Scoring follows llama.cpp's perplexity tool so the figures compare: the tokens are cut into
chunks of --ctx tokens, each evaluated from an empty cache, and only the second half of each chunk
is scored (every scored token has at least ctx/2 tokens of context).

Reference logits (--save-ref-logits, normally from an f16-KV run) are stored as the top-k
log-probabilities per scored position, not the whole vocabulary (49k floats a position would make
a 16k-token reference 3 GB). KLD is then computed between the distributions coarse-grained to
"each of the reference's top-k tokens, plus everything else": by the data-processing inequality
this is a lower bound of the true KLD. It is not tight on a small LM: on SmolLM2-135M over
wikitext the top 64 hold ~86% of the mass and the bound reads ~20% low (q8 KV: 0.0032 vs 0.0040
exact; k = 256: 0.0036; k = 1024: 0.0039). So for decisions use --ref-kv f16, which runs the
reference alongside in a second context and gives the exact KLD, at twice the time.

Also usable without the CLI: `python -m edgert.perplexity MODEL FILE ...`.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError, ModelFormatError

KV_CHOICES = ("f32", "f16", "q8", "q4")
DEFAULT_TOP_K = 64
_REF_FORMAT = 1


@dataclass(frozen=True)
class PerplexityResult:
    n_tokens: int          # tokens evaluated
    n_scored: int          # next-token predictions scored
    n_chunks: int
    n_ctx: int
    kv_k: str
    kv_v: str
    ppl: float
    nll: float             # mean negative log-likelihood (nats)
    seconds: float
    kld: Optional[float] = None          # mean KLD vs the reference (top-k + rest, lower bound)
    kld_p99: Optional[float] = None      # 99th percentile of the per-position KLD
    top1: Optional[float] = None         # fraction of positions whose argmax equals the ref's
    ref_ppl: Optional[float] = None
    ref_tail_mass: Optional[float] = None  # mean probability outside the reference's top-k

    @property
    def ppl_change(self) -> Optional[float]:
        """Relative PPL change vs the reference run (0.004 = +0.4%)."""
        return None if self.ref_ppl is None else self.ppl / self.ref_ppl - 1.0


# ---- reference logits ----------------------------------------------------------------------------

@dataclass
class ReferenceLogits:
    """Top-k log-probabilities of a reference run, one row per scored position."""

    tokens: np.ndarray      # int32 [n_tokens], every evaluated token (to check both runs match)
    n_ctx: int
    top_ids: np.ndarray     # int32 [n_scored, k], best first
    top_logp: np.ndarray    # float32 [n_scored, k]
    target_logp: np.ndarray  # float32 [n_scored], log p of the token that actually came next
    kv: str

    def save(self, path: str | os.PathLike[str]) -> None:
        # Written through a file object: np.savez_compressed would append ".npz" to a bare path.
        with open(path, "wb") as f:
            np.savez_compressed(f, format=np.int32(_REF_FORMAT), tokens=self.tokens,
                                n_ctx=np.int32(self.n_ctx), top_ids=self.top_ids,
                                top_logp=self.top_logp, target_logp=self.target_logp,
                                kv=np.array(self.kv))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ReferenceLogits":
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != _REF_FORMAT:
                    raise ModelFormatError(f"{path}: reference-logits format {int(z['format'])}; "
                                           f"this edgert reads {_REF_FORMAT}: save it again")
                ref = cls(tokens=z["tokens"].astype(np.int32), n_ctx=int(z["n_ctx"]),
                          top_ids=z["top_ids"].astype(np.int32),
                          top_logp=z["top_logp"].astype(np.float32),
                          target_logp=z["target_logp"].astype(np.float32), kv=str(z["kv"]))
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ModelFormatError(f"{path} is not a reference-logits file written by "
                                   f"--save-ref-logits ({e})") from e
        if ref.top_ids.shape != ref.top_logp.shape or len(ref.top_ids) != len(ref.target_logp):
            raise ModelFormatError(f"{path}: inconsistent array shapes; save it again")
        return ref


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def top_k(logp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of each row, best first: (ids int32, values float32)."""
    k = min(k, logp.shape[-1])
    ids = np.argpartition(-logp, k - 1, axis=-1)[:, :k]
    vals = np.take_along_axis(logp, ids, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return (np.take_along_axis(ids, order, axis=-1).astype(np.int32),
            np.take_along_axis(vals, order, axis=-1).astype(np.float32))


def kld_topk(ref_ids: np.ndarray, ref_logp: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row KL(ref || test) over {each ref top-k token, the rest}; also the ref's tail mass.

    ref_ids/ref_logp: [n, k]; logp: the test run's full log-softmax [n, vocab]."""
    p_log = ref_logp.astype(np.float64)
    q_log = np.take_along_axis(logp, ref_ids.astype(np.int64), axis=-1)
    p = np.exp(p_log)
    kl = (p * (p_log - q_log)).sum(axis=-1)
    # The tail: clamp away rounding below zero (a stored f32 top-k can sum to 1 + 1e-7).
    p_rest = np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - np.exp(q_log).sum(axis=-1), 1e-30, 1.0)
    tail = np.where(p_rest > 0, p_rest * (np.log(np.maximum(p_rest, 1e-30)) - np.log(q_rest)), 0.0)
    return kl + tail, p_rest


def kld_exact(ref_logp: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Per-row KL(ref || test) over the whole vocabulary (both full log-softmaxes)."""
    return (np.exp(ref_logp) * (ref_logp - logp)).sum(axis=-1)


# ---- the run -------------------------------------------------------------------------------------

class _Progress:
    def __init__(self, total: int, enabled: bool, out=sys.stderr) -> None:
        self.total, self.enabled, self.out = total, enabled, out
        self.start = time.perf_counter()

    def update(self, done: int, note: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        self.out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} chunks "
                       f"{note}  {elapsed:.0f}s, ETA {eta:.0f}s ")
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


def _context_params(n_ctx: int, kv_k: str, kv_v: str, n_threads: int):
    """ContextParams with separate K and V cache types."""
    from .model import KV_TYPES, ContextParams

    for name, kv in (("--kv-k", kv_k), ("--kv-v", kv_v)):
        if kv not in KV_TYPES:
            raise InvalidArgumentError(f"{name} {kv!r}: use one of {', '.join(KV_TYPES)}")
    return ContextParams(n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                         kv_type_k=kv_k, kv_type_v=kv_v)


def evaluate(model_path: str | os.PathLike[str], text: str, *, n_ctx: int = 512,
             kv_k: str = "f16", kv_v: str = "f16", max_tokens: int = 0, n_threads: int = 0,
             ref: Optional[ReferenceLogits] = None, save_ref: Optional[str | os.PathLike[str]] = None,
             ref_top_k: int = DEFAULT_TOP_K, ref_kv: Optional[tuple[str, str]] = None,
             progress: bool = False) -> PerplexityResult:
    """Perplexity of text under the model (see the module docstring for the scoring), with KLD
    and top-1 agreement against ref when given; save_ref stores this run as a reference.
    ref_kv (K type, V type) instead runs the reference alongside, in a second context of the same
    model: twice the time, but the KLD is exact over the whole vocabulary."""
    from .model import Model
    from .tokenizer import Tokenizer

    if n_ctx < 4:
        raise InvalidArgumentError("--ctx must be >= 4 (half of each chunk is context)")
    if ref is not None and ref_kv is not None:
        raise InvalidArgumentError("give either stored reference logits or a reference KV type")
    model = Model(model_path)
    ctx = ref_ctx = None
    try:
        ctx = model.new_context(_context_params(n_ctx, kv_k, kv_v, n_threads))
        if ref_kv is not None:
            ref_ctx = model.new_context(_context_params(n_ctx, ref_kv[0], ref_kv[1], n_threads))
        tokenizer = Tokenizer.from_metadata(model.metadata, native=model.native_tokenizer())
        tokens = np.asarray(tokenizer.encode(text), dtype=np.int32)
        if max_tokens > 0:
            tokens = tokens[:max_tokens]
        n_chunks = len(tokens) // n_ctx
        if n_chunks == 0:
            raise InvalidArgumentError(f"the text has {len(tokens)} tokens, fewer than one chunk of "
                                       f"--ctx {n_ctx}; give a longer text or a smaller --ctx")
        tokens = tokens[:n_chunks * n_ctx]
        if ref is not None:
            if ref.n_ctx != n_ctx or len(ref.tokens) != len(tokens) or not np.array_equal(ref.tokens, tokens):
                raise InvalidArgumentError(
                    f"the reference logits were made with --ctx {ref.n_ctx} over {len(ref.tokens)} "
                    f"tokens; this run has --ctx {n_ctx} over {len(tokens)} tokens: use the same "
                    "model, FILE, --ctx and --max-tokens")
        first = n_ctx // 2
        per_chunk = n_ctx - 1 - first
        nll_sum, ref_nll_sum, n_scored, agree = 0.0, 0.0, 0, 0
        klds: list[np.ndarray] = []
        tails: list[np.ndarray] = []
        saved_ids, saved_logp, saved_target = [], [], []
        bar = _Progress(n_chunks, progress)
        start = time.perf_counter()
        for c in range(n_chunks):
            chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
            ctx.reset()
            logits = ctx.eval(chunk, all_logits=True)
            logp = log_softmax(logits[first:n_ctx - 1])
            targets = chunk[first + 1:].astype(np.int64)
            target_logp = np.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
            nll_sum -= float(target_logp.sum())
            n_scored += per_chunk
            if ref is not None:
                rows = slice(c * per_chunk, (c + 1) * per_chunk)
                kl, tail = kld_topk(ref.top_ids[rows], ref.top_logp[rows], logp)
                klds.append(kl)
                tails.append(tail)
                agree += int((logp.argmax(axis=-1) == ref.top_ids[rows, 0]).sum())
            if ref_ctx is not None:
                ref_ctx.reset()
                ref_logp = log_softmax(ref_ctx.eval(chunk, all_logits=True)[first:n_ctx - 1])
                ref_nll_sum -= float(np.take_along_axis(ref_logp, targets[:, None], axis=-1).sum())
                klds.append(kld_exact(ref_logp, logp))
                tails.append(np.zeros(per_chunk))
                agree += int((logp.argmax(axis=-1) == ref_logp.argmax(axis=-1)).sum())
            if save_ref is not None:
                ids, vals = top_k(logp, ref_top_k)
                saved_ids.append(ids)
                saved_logp.append(vals)
                saved_target.append(target_logp.astype(np.float32))
            note = f"PPL {math.exp(nll_sum / n_scored):.4f}"
            if klds:
                note += f"  KLD {float(np.concatenate(klds).mean()):.5f}"
            bar.update(c + 1, note)
        bar.close()
        seconds = time.perf_counter() - start
    finally:
        for c_ in (ctx, ref_ctx):
            if c_ is not None:
                c_.close()
        model.close()

    if save_ref is not None:
        ReferenceLogits(tokens=tokens, n_ctx=n_ctx, top_ids=np.concatenate(saved_ids),
                        top_logp=np.concatenate(saved_logp),
                        target_logp=np.concatenate(saved_target), kv=f"{kv_k}/{kv_v}").save(save_ref)
    nll = nll_sum / n_scored
    extra = {}
    if klds:
        all_kl = np.concatenate(klds)
        ref_nll = (ref_nll_sum / n_scored if ref is None
                   else -float(ref.target_logp.astype(np.float64).mean()))
        extra = dict(kld=float(all_kl.mean()), kld_p99=float(np.percentile(all_kl, 99)),
                     top1=agree / n_scored, ref_ppl=float(math.exp(ref_nll)),
                     ref_tail_mass=float(np.concatenate(tails).mean()))
    return PerplexityResult(n_tokens=len(tokens), n_scored=n_scored, n_chunks=n_chunks, n_ctx=n_ctx,
                            kv_k=kv_k, kv_v=kv_v, ppl=math.exp(nll), nll=nll, seconds=seconds,
                            **extra)


# ---- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .edgt file")
    parser.add_argument("file", help="a UTF-8 text file, e.g. wikitext-2-raw-test.txt")
    parser.add_argument("-c", "--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    parser.add_argument("--kv", choices=KV_CHOICES, default=None,
                        help="KV-cache type for K and V (default f16)")
    parser.add_argument("--kv-k", choices=KV_CHOICES, default=None, help="K cache type (overrides --kv)")
    parser.add_argument("--kv-v", choices=KV_CHOICES, default=None, help="V cache type (overrides --kv)")
    parser.add_argument("--max-tokens", type=int, default=0,
                        help="use only the first N tokens of the text (0: all)")
    parser.add_argument("-t", "--threads", type=int, default=0, help="threads (0: physical cores)")
    parser.add_argument("--ref-logits", default=None,
                        help="reference logits from --save-ref-logits: report KLD and top-1 agreement")
    parser.add_argument("--save-ref-logits", default=None,
                        help="store this run's top-k log-probabilities as a reference (run it with f16 KV)")
    parser.add_argument("--ref-kv", default=None, metavar="K[/V]",
                        help="run a reference with this KV type (e.g. f16) alongside: exact KLD over "
                             "the whole vocabulary, at twice the time; instead of --ref-logits")
    parser.add_argument("--ref-top-k", type=int, default=DEFAULT_TOP_K,
                        help=f"log-probabilities kept per position in a saved reference (default {DEFAULT_TOP_K})")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    kv_k = args.kv_k or args.kv or "f16"
    kv_v = args.kv_v or args.kv or "f16"
    if args.ref_top_k < 1:
        raise InvalidArgumentError("--ref-top-k must be >= 1")
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(f"{args.file} is not UTF-8 text ({e})") from e
    ref = ReferenceLogits.load(args.ref_logits) if args.ref_logits else None
    ref_kv = None
    if args.ref_kv:
        k, _, v = args.ref_kv.partition("/")
        ref_kv = (k, v or k)
    r = evaluate(args.model, text, n_ctx=args.ctx, kv_k=kv_k, kv_v=kv_v,
                 max_tokens=args.max_tokens, n_threads=args.threads, ref=ref,
                 save_ref=args.save_ref_logits, ref_top_k=args.ref_top_k, ref_kv=ref_kv,
                 progress=not args.no_progress and not args.json)
    if args.json:
        import json
        print(json.dumps({**asdict(r), "ppl_change": r.ppl_change}))
        return 0
    print(f"KV k={r.kv_k} v={r.kv_v}, ctx {r.n_ctx}: {r.n_scored} tokens scored in {r.n_chunks} "
          f"chunks, {r.seconds:.1f} s ({r.n_tokens / r.seconds:.0f} tok/s)")
    print(f"PPL {r.ppl:.4f}")
    if r.kld is not None:
        print(f"reference PPL {r.ref_ppl:.4f} ({100 * r.ppl_change:+.3f}%)")
        how = ("exact" if ref_kv else f"top-{ref.top_ids.shape[1]} + rest: a lower bound; reference "
               f"tail mass {r.ref_tail_mass:.4f}")
        print(f"mean KLD {r.kld:.6f} (p99 {r.kld_p99:.6f}; {how})")
        print(f"top-1 agreement {100 * r.top1:.2f}%")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="edgert perplexity", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    from .errors import EdgertError
    try:
        return run(parser.parse_args(argv))
    except (EdgertError, OSError) as e:  # one line, as the edgert CLI prints errors
        print(f"edgert perplexity: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
