"""`edgert serve MODEL`: the OpenAI-compatible server. Wired into edgert/cli.py through
add_arguments() and run(); this module imports no server dependency, so `edgert --help` works
without the extra and `edgert serve` says what to install."""
from __future__ import annotations

import argparse
import ipaddress
import sys

from ..errors import EdgertError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..defaults import LLAMA_CPP_DEFAULTS as d
    p.description = ("OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions "
                     "(SSE streaming with stream=true), GET /v1/models, /health, POST /tokenize, "
                     "/detokenize. Sampling fields a request leaves out take the model's "
                     "generation_config, else llama.cpp's defaults "
                     + ", ".join(f"{k}={v}" for k, v in d.items()) + ".")
    p.add_argument("model", help="an .edgt file (a .gguf is converted once into ~/.cache/edgert)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--parallel", "-np", type=int, default=1,
                   help="slots: requests served at once, each with its own context over the one "
                        "shared model (default 1)")
    p.add_argument("--queue", type=int, default=16,
                   help="requests that may wait for a slot; more get HTTP 503 (default 16)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("-c", "--ctx", type=int, default=0,
                   help="context window per slot in tokens (0: min(model's, 4096))")
    p.add_argument("-t", "--threads", type=int, default=0,
                   help="threads of a forward pass (0: the physical cores; with --no-batch, "
                        "threads per slot, 0 dividing the cores among the slots)")
    p.add_argument("--no-batch", dest="batch_decode", action="store_false",
                   help="slots decode each on its own instead of sharing one batched forward "
                        "pass per step (for comparison)")
    p.add_argument("--kv-type", default="auto", choices=["auto", "f32", "f16", "q8", "q4"])
    p.add_argument("--draft", default=None, metavar="MODEL",
                   help="a smaller model with the same vocabulary for speculative decoding")
    p.add_argument("--speculative", default="auto", choices=["auto", "lookup", "draft", "off"],
                   help="auto = the --draft model when given, else prompt lookup for greedy "
                        "requests (default)")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                   help="largest request body; more gets HTTP 413 (default 1 MiB)")
    p.add_argument("--alias", default="", help="model id reported by /v1/models (default: file stem)")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise EdgertError('`edgert serve` needs the server extra: pip install "edgert[server]"') \
            from None
    from ..cli import resolve_model_path
    from . import ServerSettings, create_app
    if args.parallel < 1 or args.queue < 0 or args.max_body < 1:
        raise EdgertError("--parallel must be >= 1, --queue >= 0 and --max-body >= 1")
    if not _is_loopback(args.host) and not args.api_key:
        print(f"edgert serve: warning: listening on {args.host} without --api-key: anyone who "
              "can reach this port can use the model", file=sys.stderr)
    settings = ServerSettings(
        model=resolve_model_path(args.model), host=args.host, port=args.port,
        parallel=args.parallel, queue_size=args.queue, api_key=args.api_key, n_ctx=args.ctx,
        n_threads=args.threads, kv_type=args.kv_type,
        draft=resolve_model_path(args.draft) if args.draft else None,
        speculative=args.speculative, max_body_bytes=args.max_body, model_alias=args.alias,
        batch_decode=args.batch_decode)
    app = create_app(settings)
    print(f"edgert serve: {settings.model_id} on http://{args.host}:{args.port}/v1 "
          f"({args.parallel} slot(s), n_ctx {app.state.server.pool.n_ctx} each)", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    timeout_graceful_shutdown=2)
    finally:
        app.state.server.pool.close()
    return 0
