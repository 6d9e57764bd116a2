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

from . import c_library
from .errors import EdgertError

Handler = Callable[[argparse.Namespace], int]


def _optional_module(name: str) -> tuple[Optional[ModuleType], str]:
    import importlib
    try:
        return importlib.import_module(name), ""
    except ImportError as e:
        return None, str(e)


def _add_delegate(sub: Any, name: str, module_name: str, help_text: str,
                  command: Optional[str] = None) -> None:
    """A subcommand whose arguments and work live in another module's add_arguments/run. When
    the command line names another subcommand (`command`), the module is not imported: the
    delegates' imports (torch, onnx, numpy) would cost `edgert sensor run` seconds of start."""
    p = sub.add_parser(name, help=help_text)
    if command is not None and command != name:
        p.add_argument("rest", nargs=argparse.REMAINDER)
        return
    module, why = _optional_module(module_name)
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
    p.add_argument("model", help="an .edgt file (make one with `edgert convert`); a .gguf is "
                                 "converted once into a cache (~/.cache/edgert) and reused")
    p.add_argument("-t", "--threads", type=int, default=0, help="threads (0: physical cores)")
    p.add_argument("-c", "--ctx", type=int, default=0,
                   help="context window in tokens (0: min(model's, 4096))")
    p.add_argument("--kv-type", default="auto", choices=["auto", "f32", "f16", "q8", "q4"],
                   help="KV-cache type; auto = int8 where the head size allows, else f16")
    p.add_argument("--draft", default=None, metavar="MODEL",
                   help="a smaller model with the same vocabulary for speculative decoding")
    p.add_argument("--speculative", default="auto", choices=["auto", "lookup", "draft", "off"],
                   help="speculative decoding: auto = prompt lookup when greedy, the --draft "
                        "model when given (default: auto)")


def _add_sampling_options(p: argparse.ArgumentParser, default_n: int, chat_defaults: bool) -> None:
    """chat_defaults: the sampling defaults are the model's generation_config, else llama.cpp's
    (resolved once the model is open); otherwise greedy."""
    from .defaults import LLAMA_CPP_DEFAULTS as d
    if chat_defaults:
        src = "default: the model's generation_config, else"
        helps = {k: f"({src} {v})" for k, v in d.items()}
    else:
        helps = {"temperature": "(default 0: greedy)", "top_k": "(default 0: off)",
                 "top_p": "(default 1: off)", "min_p": "(default 0: off)",
                 "repeat_penalty": "(default 1: off)"}
    p.add_argument("-n", "--max-tokens", type=int, default=default_n,
                   help=f"tokens to generate (default {default_n})")
    p.add_argument("--temp", type=float, default=None, help=f"temperature, >= 0; 0 = greedy {helps['temperature']}")
    p.add_argument("--top-k", type=int, default=None, help=f"top-k, >= 0; 0 = off {helps['top_k']}")
    p.add_argument("--top-p", type=float, default=None, help=f"top-p in [0, 1] {helps['top_p']}")
    p.add_argument("--min-p", type=float, default=None, help=f"min-p in [0, 1] {helps['min_p']}")
    p.add_argument("--repeat-penalty", type=float, default=None,
                   help=f"repetition penalty, > 0; 1 = off {helps['repeat_penalty']}")
    p.add_argument("--seed", type=int, default=None,
                   help="RNG seed (default: 0 for run, a random one for chat)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.set_defaults(chat_defaults=chat_defaults)


def _gen_kwargs(args: argparse.Namespace, llm: Any = None) -> dict[str, Any]:
    if args.chat_defaults and llm is not None:
        from .defaults import sampling_defaults
        base, _ = sampling_defaults(llm.metadata)
    else:
        base = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
    given = {"temperature": args.temp, "top_k": args.top_k, "top_p": args.top_p,
             "min_p": args.min_p, "repeat_penalty": args.repeat_penalty}
    out = dict(base, **{k: v for k, v in given.items() if v is not None})
    if args.seed is None:
        import random
        args.seed = random.randrange(2**32) if args.chat_defaults else 0
    out.update(max_tokens=args.max_tokens, seed=args.seed, stop=args.stop or None)
    from .model import SamplerParams
    SamplerParams(**{k: out[k] for k in ("temperature", "top_k", "top_p", "min_p",
                                         "repeat_penalty", "seed")}).validate()  # range errors now
    return out


def resolve_model_path(path: str) -> str:
    """An .edgt path as given; a .gguf is converted once into the user cache
    ($XDG_CACHE_HOME/edgert, else ~/.cache/edgert), keyed by its path, size and mtime, and the
    cached file reused while the .gguf is unchanged."""
    if not path.endswith(".gguf"):
        return path
    import hashlib
    st = os.stat(path)  # FileNotFoundError for a missing file, as for an .edgt
    key = hashlib.sha256(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgert")
    out = os.path.join(cache, f"{os.path.basename(path)[:-5]}-{key}.edgt")
    if not os.path.exists(out):
        from .converters import convert
        os.makedirs(cache, exist_ok=True)
        print(f"edgert: converting {path} -> {out} (once; reused while the .gguf is unchanged)",
              file=sys.stderr)
        tmp = out + f".{os.getpid()}.tmp"
        try:
            convert(path, tmp, progress=False)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def _open(args: argparse.Namespace, verify: bool = False) -> Any:
    from .llm import LLM
    draft = getattr(args, "draft", None)
    return LLM(resolve_model_path(args.model), n_ctx=args.ctx, n_threads=args.threads,
               n_threads_batch=args.threads, kv_type=args.kv_type, verify=verify,
               draft=resolve_model_path(draft) if draft else None,
               speculative=getattr(args, "speculative", "auto"))


def _write_stream(chunks: Any, out: TextIO) -> str:
    parts = []
    for chunk in chunks:
        out.write(chunk)
        out.flush()
        parts.append(chunk)
    return "".join(parts)


def _speed_line(t: Any) -> str:
    line = (f"[{t.n_prompt} prompt tokens ({t.n_reused} reused), prefill {t.prefill_tok_s:.1f} tok/s; "
            f"{t.n_generated} tokens, decode {t.decode_tok_s:.1f} tok/s")
    if t.n_drafted:
        line += f"; speculative: {t.n_accepted}/{t.n_drafted} drafts accepted"
    return line + "]"


def _read_prompt(args: argparse.Namespace) -> str:
    if args.file is not None:
        if args.prompt is not None:
            raise EdgertError("give the prompt as an argument or with --file, not both")
        if args.file == "-":
            return sys.stdin.read()
        with open(args.file, encoding="utf-8") as f:
            return f.read()
    if args.prompt is None or args.prompt == "-":
        if args.prompt is None and sys.stdin.isatty():
            raise EdgertError("no prompt: give it as an argument, with --file FILE, or on stdin")
        return sys.stdin.read()
    return args.prompt


def cmd_run(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    response_format = None
    if args.json_schema:
        with open(args.json_schema, encoding="utf-8") as f:
            try:
                schema = json.load(f)
            except json.JSONDecodeError as e:
                raise EdgertError(f"{args.json_schema}: not JSON ({e})") from None
        response_format = {"type": "json_schema", "json_schema": {"name": "schema", "schema": schema}}
    with _open(args) as llm:
        kwargs = _gen_kwargs(args, llm)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if args.chat:
            chunks = llm.chat([{"role": "user", "content": prompt}], stream=True, **kwargs)
        else:
            chunks = llm.generate(prompt, stream=True, **kwargs)
        _write_stream(chunks, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if args.stats:
            print(_speed_line(llm.last_timings), file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat_cli import ChatSession
    with _open(args) as llm:
        return ChatSession(llm, args, _gen_kwargs(args, llm)).run()


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
        f"provenance   " + ", ".join(f"{k}={v}" for k, v in r["provenance"].items() if k != "compression"),
        f"runtime      edgert {r['runtime_version']}, ISA {r['isa']} (available: {r['available_isas']})",
        f"context      n_ctx={r['n_ctx']}, KV {r['kv_bytes_per_token']} bytes/token",
    ]
    comp = r["provenance"].get("compression")
    if isinstance(comp, dict) and isinstance(comp.get("report"), list):
        lines.append(f"compression  {comp.get('calibration', '')}")
        lines.append(f"             {'stage':<10} {'PPL':>9} {'mean KLD':>9} {'bytes':>13} {'bits/w':>7}")
        for s in comp["report"]:
            kld = "-" if s.get("kld") is None else f"{s['kld']:.5f}"
            lines.append(f"             {s.get('stage', '?'):<10} {s.get('ppl', 0):>9.4f} {kld:>9} "
                         f"{s.get('bytes', 0):>13,} {s.get('bits_per_weight', 0):>7.3f}")
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


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The `edgert` parser; `command`: the subcommand the command line names, when known, so that
    only its delegate module is imported (None: all, for `edgert --help`)."""
    from . import __version__
    parser = argparse.ArgumentParser(prog="edgert", description="On-device LLM inference runtime.",
                                     epilog="edgert --cflags --libs [--cmake-dir --pkgconfig-dir]: flags to "
                                            "build a C program against this installation's libedgert.")
    parser.add_argument("--version", action="version", version=f"edgert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_delegate(sub, "convert", "edgert.converters.cli",
                  "convert a Hugging Face, GGUF or llama2.c checkpoint to .edgt", command)

    p = sub.add_parser("run", help="continue a prompt, streaming to stdout")
    _add_model_options(p)
    p.add_argument("prompt", nargs="?", default=None,
                   help="the prompt; '-' or none reads it from stdin")
    p.add_argument("-f", "--file", default=None, help="read the prompt from this file ('-': stdin)")
    _add_sampling_options(p, default_n=128, chat_defaults=False)
    p.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    p.add_argument("--json-schema", default=None, metavar="FILE",
                   help="constrain the output to JSON valid against this JSON schema")
    p.add_argument("--stats", action="store_true",
                   help="print prompt/prefill/decode speed (and speculative acceptance) to stderr")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("chat", help="interactive chat: line editing, history, /save, /load, "
                                    "/system (reads stdin when piped)")
    _add_model_options(p)
    _add_sampling_options(p, default_n=512, chat_defaults=True)
    p.add_argument("--system", default="", help="system message")
    p.set_defaults(handler=cmd_chat)

    p = sub.add_parser("info", help="hyper-parameters, tensor types, sizes, provenance, ISA")
    _add_model_options(p)
    p.add_argument("--verify", action="store_true", help="check every tensor's CRC-32")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_info)

    _add_delegate(sub, "compress", "edgert.converters.compress.cli",
                  "calibrated quantization, pruning and distillation with a quality report",
                  command)
    _add_delegate(sub, "bench", "edgert.bench", "measure speed and memory", command)
    _add_delegate(sub, "serve", "edgert.server.cli",
                  "OpenAI-compatible HTTP server (pip install \"edgert[server]\")", command)
    _add_delegate(sub, "perplexity", "edgert.perplexity",
                  "perplexity and KL divergence vs reference logits (KV-cache quality)", command)
    _add_delegate(sub, "sensor", "edgert.sensor.cli",
                  "compile, stream and benchmark small ONNX models (the sensor path)", command)
    _add_delegate(sub, "export-onnx", "edgert.onnx_export",
                  "export an .edgt model to ONNX (onnxruntime / onnxruntime-genai)", command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and all(a in c_library.FLAGS for a in argv):
        # `edgert --cflags --libs`: compiler flags for a C program using the wheel's libedgert
        try:
            print(" ".join(c_library.FLAGS[a]() for a in argv))
        except FileNotFoundError as e:
            print(f"edgert: error: {e}", file=sys.stderr)
            return 1
        return 0
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args, rest = parser.parse_known_args(argv)
    # `run MODEL --temp 1 "prompt"`: argparse fills an optional positional only where it first
    # meets positionals, so a prompt after the options arrives here.
    if getattr(args, "command", None) == "run" and args.prompt is None and len(rest) == 1 \
            and not rest[0].startswith("-"):
        args.prompt, rest = rest[0], []
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler: Handler = args.handler
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:
        # The reader went away (`edgert run ... | head`): stop quietly, as cat does. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
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
