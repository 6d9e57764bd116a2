"""The `edgert` command: convert, run, chat, info, bench, perplexity.

Errors print one line to stderr and exit 1 (130 on Ctrl-C), whatever the input; EDGERT_DEBUG=1
shows the traceback. Arguments are checked by the object layer (edgert/arguments.py).
`convert`, `bench` and `perplexity` belong to edgert.converters.cli, edgert.bench and
edgert.perplexity; this file only wires them in.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from types import ModuleType
from typing import Any, Callable, Optional, Sequence, TextIO

from .errors import EdgertError

Handler = Callable[[argparse.Namespace], int]


def _optional_module(name: str) -> tuple[Optional[ModuleType], str]:
    import importlib
    try:
        return importlib.import_module(name), ""
    except ImportError as e:
        return None, str(e)


def _add_delegate(sub: Any, name: str, module_name: str, help_text: str) -> None:
    """A subcommand whose arguments and work live in another module's add_arguments/run."""
    module, why = _optional_module(module_name)
    p = sub.add_parser(name, help=help_text)
    if module is not None:
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
        return
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def unavailable(args: argparse.Namespace) -> int:
        raise EdgertError(f"`edgert {name}` is unavailable: {module_name} failed to import "
                          f"({why}); reinstall edgert with `pip install .`")
    p.set_defaults(handler=unavailable)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .edgt file (make one with `edgert convert`)")
    p.add_argument("-t", "--threads", type=int, default=0, help="threads (0: physical cores)")
    p.add_argument("-c", "--ctx", type=int, default=0,
                   help="context window in tokens (0: min(model's, 4096))")
    p.add_argument("--kv-type", default="auto", choices=["auto", "f32", "f16", "q8", "q4"],
                   help="KV-cache type; auto = int8 where the head size allows, else f16")


def _add_sampling_options(p: argparse.ArgumentParser, default_n: int) -> None:
    p.add_argument("-n", "--max-tokens", type=int, default=default_n, help="tokens to generate")
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0: greedy)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _gen_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(max_tokens=args.max_tokens, temperature=args.temp, top_k=args.top_k,
                top_p=args.top_p, min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                seed=args.seed, stop=args.stop or None)


def _open(args: argparse.Namespace, verify: bool = False) -> Any:
    from .llm import LLM
    return LLM(args.model, n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads,
               kv_type=args.kv_type, verify=verify)


def _write_stream(chunks: Any, out: TextIO) -> str:
    parts = []
    for chunk in chunks:
        out.write(chunk)
        out.flush()
        parts.append(chunk)
    return "".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    with _open(args) as llm:
        kwargs = _gen_kwargs(args)
        if args.chat:
            chunks = llm.chat([{"role": "user", "content": args.prompt}], stream=True, **kwargs)
        else:
            chunks = llm.generate(args.prompt, stream=True, **kwargs)
        _write_stream(chunks, sys.stdout)
        sys.stdout.write("\n")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .errors import ContextOverflowError
    interactive = sys.stdin.isatty()
    system = [{"role": "system", "content": args.system}] if args.system else []
    with _open(args) as llm:
        llm.render_chat([{"role": "user", "content": "hi"}])  # fail now if there is no template
        messages: list[dict[str, str]] = list(system)
        if interactive:
            print("edgert chat: /reset starts over, /exit quits", file=sys.stderr)
        while True:
            if interactive:
                sys.stderr.write("> ")
                sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:
                break
            text = line.rstrip("\r\n")
            if text.strip() == "/exit":
                break
            if text.strip() == "/reset":
                messages = list(system)
                llm.reset()
                print("(conversation reset)", file=sys.stderr)
                continue
            if not text.strip():
                continue
            messages.append({"role": "user", "content": text})
            try:
                answer = _write_stream(llm.chat(messages, stream=True, **_gen_kwargs(args)),
                                       sys.stdout)
            except ContextOverflowError as e:
                messages.pop()
                print(f"edgert: error: {e} (type /reset to start over)", file=sys.stderr)
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            messages.append({"role": "assistant", "content": answer})
    return 0


def model_report(llm: Any) -> dict[str, Any]:
    from . import _edgert
    meta = llm.metadata

    def obj(value: Any) -> dict[str, Any]:  # the file's metadata may hold anything: show objects only
        return value if isinstance(value, dict) else {}
    quantization = obj(meta.get("quantization"))
    return {
        "path": os.path.abspath(llm.path),
        "info": asdict(llm.info),
        "hparams": obj(meta.get("hparams")),
        "tensor_types": obj(quantization.get("tensor_types")),
        "quantization_recipe": quantization.get("recipe"),
        "provenance": obj(meta.get("provenance")),
        "has_chat_template": bool(meta.get("chat_template")),
        "tokenizer": {k: v for k, v in obj(meta.get("tokenizer")).items() if k != "json"},
        "n_ctx": llm.n_ctx,
        "kv_bytes_per_token": llm.context.kv_bytes_per_token,
        "isa": _edgert.isa(),
        "available_isas": _edgert.available_isas(),
        "relayout": asdict(llm.layout),
        "runtime_version": _edgert.version(),
    }


def _print_report(r: dict[str, Any], out: TextIO) -> None:
    info = r["info"]
    mib = 1024 * 1024
    lines = [
        f"file         {r['path']}",
        f"model        {info['name'] or '(unnamed)'} ({info['architecture']}, format v{info['format_version']})",
        f"parameters   {info['n_params'] / 1e6:.1f} M",
        f"size         file {info['file_size'] / mib:.1f} MiB, weights {info['weights_size'] / mib:.1f} MiB",
        f"hparams      " + ", ".join(f"{k}={v}" for k, v in r["hparams"].items()),
        f"tensors      " + ", ".join(f"{k} x{v}" for k, v in sorted(r["tensor_types"].items())),
        f"recipe       {r['quantization_recipe']}",
        f"tokenizer    bos={info['bos_token_id']} eos={info['eos_token_id']} "
        f"add_bos={r['tokenizer'].get('add_bos')} chat_template={'yes' if r['has_chat_template'] else 'no'}",
        f"provenance   " + ", ".join(f"{k}={v}" for k, v in r["provenance"].items()),
        f"runtime      edgert {r['runtime_version']}, ISA {r['isa']} (available: {r['available_isas']})",
        f"context      n_ctx={r['n_ctx']}, KV {r['kv_bytes_per_token']} bytes/token",
    ]
    lay = r["relayout"]
    lines.append(f"re-layout    {lay['bytes'] / mib:.1f} MiB for {lay['isa']} kernels, "
                 f"{lay['seconds'] * 1e3:.0f} ms at load" if lay["isa"] else
                 "re-layout    none (kernels read the mapped file)")
    if "verified" in r:
        lines.append("checksums    every tensor CRC-32 verified")
    out.write("\n".join(lines) + "\n")


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args, verify=args.verify) as llm:
        report = model_report(llm)
        if args.verify:
            report["verified"] = True
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_report(report, sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="edgert", description="On-device LLM inference runtime.")
    parser.add_argument("--version", action="version", version=f"edgert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_delegate(sub, "convert", "edgert.converters.cli",
                  "convert a Hugging Face, GGUF or llama2.c checkpoint to .edgt")

    p = sub.add_parser("run", help="continue a prompt, streaming to stdout")
    _add_model_options(p)
    p.add_argument("prompt")
    _add_sampling_options(p, default_n=128)
    p.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("chat", help="interactive chat (reads lines from stdin; /reset, /exit)")
    _add_model_options(p)
    _add_sampling_options(p, default_n=512)
    p.add_argument("--system", default="", help="system message")
    p.set_defaults(handler=cmd_chat)

    p = sub.add_parser("info", help="hyper-parameters, tensor types, sizes, provenance, ISA")
    _add_model_options(p)
    p.add_argument("--verify", action="store_true", help="check every tensor's CRC-32")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_info)

    _add_delegate(sub, "bench", "edgert.bench", "measure speed and memory")
    _add_delegate(sub, "perplexity", "edgert.perplexity",
                  "perplexity and KL divergence vs reference logits (KV-cache quality)")
    _add_delegate(sub, "sensor", "edgert.sensor.cli",
                  "compile, stream and benchmark small ONNX models (the sensor path)")
    _add_delegate(sub, "export-onnx", "edgert.onnx_export",
                  "export an .edgt model to ONNX (onnxruntime / onnxruntime-genai)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get("EDGERT_DEBUG") == "1":
            raise
        sys.stderr.write("\n")
        return 130
    except (EdgertError, OSError, ValueError) as e:
        if os.environ.get("EDGERT_DEBUG") == "1":
            raise
        print(f"edgert: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except BaseException as e:
        # Anything else is a bug in edgert (every malformed input has a typed error), but the
        # user still gets one line; a Rust PanicException derives from BaseException.
        if isinstance(e, (SystemExit, GeneratorExit)) or os.environ.get("EDGERT_DEBUG") == "1":
            raise
        print(f"edgert: internal error: {type(e).__name__}: {_one_line(e)} (please report it; "
              "EDGERT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"{e.filename}: {e.strerror or 'not found'}"
    text = " ".join(str(e).split()) or type(e).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
