"""`edgert compress SRC -o OUT.edgt [--recipe R.toml] [--calib self[:N]|FILE] [--prune ...]
[--distill ...] [--time-budget T] [--quant TYPE:METHOD] [--target-bpw B] [--tune ...]`; wired into the main CLI
by edgert/cli.py through add_arguments() and run()."""
from __future__ import annotations

import argparse
import sys

from edgert.errors import EdgertError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="teacher: Hugging Face dir, .gguf, .whl/.zip holding a .gguf, llama2.c .bin, or .edgt")
    parser.add_argument("-o", "--output", default=None,
                        help="output .edgt path (written atomically); without it only --save-calib's "
                             "calibration data is made")
    parser.add_argument("--recipe", default=None, help="TOML recipe (flags below override it)")
    parser.add_argument("--calib", default=None,
                        help="calibration text: 'self[:N]' (N sequences sampled from the teacher; default), "
                             "a UTF-8 file, or a .npz kept by --save-calib (several, comma-separated: trained on "
                             "together, the first one's held-back text)")
    parser.add_argument("--calib-seqs", type=int, default=None, help="calibration sequences (default 128)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per calibration sequence (default 256)")
    parser.add_argument("--prune", default=None, metavar="ffn=F,heads=H,layers=L,importance=act|taylor",
                        help="structured pruning: fractions of FFN channels and KV groups, whole layers")
    parser.add_argument("--distill", default=None, metavar="steps=N,lr=X,T=2,hidden=0,batch=4,schedule=const",
                        help="heal by knowledge distillation from the teacher (schedule=cos: the learning "
                             "rate falls to 0 along a cosine by the end of the steps or time budget)")
    parser.add_argument("--time-budget", default=None, help="distillation time limit: seconds, or 45m, 1h")
    parser.add_argument("--quant", default=None, metavar="TYPE[:METHOD][,act_order=1,damp=D,refit=N,asym=1]",
                        help="q3_k (3-bit; q3_0 where rows are not whole 256-blocks), q3_0, q4_0, q4_1 or q8_0; "
                             "method rtn|gptq|awq|awq+gptq (default gptq); GPTQ options act_order (default 1: "
                             "columns by decreasing Hessian diagonal, static groups), asym (default 1: aim at "
                             "the float model's layer outputs), damp (default 0.01) and refit=N (rounds of "
                             "least-squares scale refit, default 0); act_mb=M (default 256: calibration "
                             "activations beyond M MB go to an unlinked temporary file beside the output, same "
                             "result, less memory); 'none' keeps floats")
    parser.add_argument("--embed-type", default=None,
                        help="type of the embedding/output matrix (default q8_0 under types of < 8 bits)")
    parser.add_argument("--target-bpw", type=float, default=None,
                        help="mixed precision: bits per weight of the block matrices, by measured sensitivity")
    parser.add_argument("--tune", default=None, metavar="blocks=E,block_lr=2e-2,steps=N,time=20m,lr=1e-3,batch=4,schedule=const",
                        help="after --quant: blocks=E retrains the codes block by block against the source "
                             "(E epochs); steps/time then heal the model by distillation that trains only the "
                             "f16 scales and the norms (same size, same kernels)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--tokenizer", default=None, help="llama2.c tokenizer.bin (default: found beside SRC)")
    parser.add_argument("--allow-quantized-source", action="store_true", default=None,
                        help="use a block-quantized teacher's dequantized values (e.g. a Q4_1 GGUF)")
    parser.add_argument("--save-stages", default=None, metavar="DIR",
                        help="also write the pruned and healed float models to DIR (pruned.edgt, healed.edgt)")
    parser.add_argument("--save-calib", default=None, metavar="FILE.npz",
                        help="keep the calibration tokens for another run's --calib FILE.npz")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fixed_mmap_threshold() -> None:
    """glibc raises its mmap threshold (up to 32 MB) each time a large mapped block is freed, after
    which the stages' many short-lived tensors of a few MB (Hessians, GPTQ's factors, activation
    chunks) come from the heap, whose freed space fragments and stays resident. A fixed threshold
    keeps every block over 128 KiB mapped, so freeing it returns it (measured on SmolLM2-135M:
    README's compression section). No-op off glibc."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (a fixed value turns the dynamic one off)
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    _fixed_mmap_threshold()
    try:
        from . import recipe as rc
        from .pipeline import compress
        toml = rc.load_toml(args.recipe) if args.recipe else None
        if args.output is None:
            stages = [f for f in ("prune", "distill", "time_budget", "quant", "target_bpw", "embed_type", "tune")
                      if getattr(args, f) is not None]
            if args.save_calib is None or stages or toml:
                print("edgert compress: error: give -o OUT.edgt (without it, only the calibration data "
                      "is made: --calib ... --save-calib FILE.npz, no stage options or --recipe)"
                      + (f"; got {', '.join('--' + f.replace('_', '-') for f in stages)}" if stages else ""),
                      file=sys.stderr)
                return 2
            from .pipeline import sample_calibration
            r = rc.build(None, calib=args.calib, calib_seqs=args.calib_seqs, seq_len=args.seq_len, seed=args.seed,
                         threads=args.threads, allow_quantized_source=args.allow_quantized_source)
            res = sample_calibration(args.src, args.save_calib, r, progress=False if args.no_progress else None,
                                     tokenizer=args.tokenizer)
            print(f"wrote {res.path}: {res.table} in {res.seconds:.0f} s")
            return 0
        r = rc.build(toml, calib=args.calib, calib_seqs=args.calib_seqs, seq_len=args.seq_len,
                     prune=args.prune, distill=args.distill, time_budget=args.time_budget, quant=args.quant,
                     target_bpw=args.target_bpw, embed_type=args.embed_type, tune=args.tune, seed=args.seed, threads=args.threads,
                     allow_quantized_source=args.allow_quantized_source)
        res = compress(args.src, args.output, r, progress=False if args.no_progress else None,
                       tokenizer=args.tokenizer, save_stages=args.save_stages, save_calib=args.save_calib)
    except ImportError as e:
        print(f"edgert compress: error: {e}; install the extra: pip install 'edgert[compress]'", file=sys.stderr)
        return 1
    except (EdgertError, FileNotFoundError) as e:
        print(f"edgert compress: error: {e}", file=sys.stderr)
        return 130 if type(e).__name__ == "DistillInterrupted" else 1
    print(res.table)
    print(f"wrote {res.path} ({res.path.stat().st_size:,} bytes) in {res.seconds:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgert compress")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
