"""The FastAPI application: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, plus
/health, /tokenize and /detokenize.

Errors are OpenAI-style objects {"error": {"message", "type", "param", "code"}}: 400 for bad
input (malformed JSON, a field out of range, a prompt or max_tokens that does not fit the
context — the message says what to change), 401 for a wrong API key, 413 for a body over the
limit, 503 with Retry-After when every slot is busy and the queue is full. Nothing a request
sends can crash the process: generation runs on a worker thread and any failure there ends that
request alone.

Responses carry `usage` (prompt/completion/total tokens) and, as an extension, `timings`:
prompt_n, prompt_ms, prompt_per_second, predicted_n, predicted_ms, predicted_per_second (named as
llama.cpp's server names them), and draft_n / draft_n_accepted / acceptance with speculative
decoding.
"""
from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
import uuid
from typing import Any, AsyncIterator, Callable, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..defaults import sampling_defaults
from ..errors import (ChatTemplateError, ContextOverflowError, EdgertError, GrammarError,
                      InvalidArgumentError, TokenIdError, TokenizerError)
from ..model import SamplerParams
from ..session import Penalties, Timings
from ..speculative import draft_for
from ..structured import constraint_for
from .settings import ServerSettings
from .slots import QueueFull, Slot, SlotPool
from .types import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                    TokenizeRequest)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.param, self.code, self.headers = param, code, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.kind, self.param, self.code,
                              self.headers)


def error_response(status: int, message: str, kind: str = "invalid_request_error",
                   param: Optional[str] = None, code: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over max_bytes is refused with 413 before it is read
    whole (Content-Length checked first; a chunked body is counted as it arrives)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    return await self._refuse(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message
        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        resp = error_response(413, f"the request body exceeds {self.max_bytes} bytes; send a "
                                   "shorter prompt", code="body_too_large")
        await resp(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class ApiKey:
    """ASGI middleware: with --api-key, /v1/* and /tokenize, /detokenize need 'Authorization:
    Bearer KEY' (401 otherwise). Plain ASGI rather than @app.middleware("http"): Starlette's
    BaseHTTPMiddleware relays every chunk of a streamed response through a memory stream and a
    task of its own, a cost paid per token."""

    def __init__(self, app: Any, api_key: Optional[str]) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode("latin-1") if api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.expected is not None and scope["type"] == "http":
            path = scope.get("path", "")
            if path.startswith("/v1") or path in ("/tokenize", "/detokenize"):
                header = dict(scope.get("headers", [])).get(b"authorization", b"")
                if header != self.expected:
                    resp = error_response(401, "invalid or missing API key: send 'Authorization: "
                                               "Bearer KEY' with the server's --api-key",
                                          code="invalid_api_key")
                    return await resp(scope, receive, send)
        await self.app(scope, receive, send)


class EventPipe:
    """Events from a slot's worker thread to the event loop, coalesced: the worker wakes the loop
    only when the pipe goes from empty to non-empty (one call_soon_threadsafe, i.e. one write to
    the loop's self-pipe, per batch rather than per token), and the loop takes everything pending
    at once, so a loop that fell behind writes several tokens in one SSE write. With
    wake_on_text=False (a non-streamed response) text events wake nobody: only the end does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake_on_text: bool = True) -> None:
        self._loop = loop
        self._wake_on_text = wake_on_text
        self._items: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._waiter: Optional[asyncio.Future] = None

    def put(self, event: Any) -> None:
        """Worker thread."""
        with self._lock:
            self._items.append(event)
            if self._wake_pending or (event[0] == "text" and not self._wake_on_text):
                return
            self._wake_pending = True
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get_all(self, timeout: Optional[float] = None) -> list[Any]:
        """Every pending event, oldest first; waits for one if there is none (an empty list
        after timeout seconds)."""
        while True:
            with self._lock:
                if self._items and (self._wake_on_text or self._items[-1][0] != "text"):
                    items = list(self._items)
                    self._items.clear()
                    return items
            self._waiter = self._loop.create_future()
            try:
                if timeout is None:
                    await self._waiter
                else:
                    try:
                        await asyncio.wait_for(self._waiter, timeout)
                    except asyncio.TimeoutError:
                        return []
            finally:
                self._waiter = None


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err.get("loc", ()))
        raise HTTPError(400, f"{param}: {err.get('msg')}", param=param or None) from None


def _timings_dict(t: Timings) -> dict[str, Any]:
    n_eval = t.n_prompt - t.n_reused
    d: dict[str, Any] = {
        "prompt_n": n_eval, "prompt_cached": t.n_reused, "prompt_ms": t.prefill_s * 1e3,
        "prompt_per_second": t.prefill_tok_s, "predicted_n": t.n_generated,
        "predicted_ms": t.decode_s * 1e3, "predicted_per_second": t.decode_tok_s,
    }
    if t.n_drafted:
        d.update(draft_n=t.n_drafted, draft_n_accepted=t.n_accepted, acceptance=t.acceptance)
    return d


def _logprob_entry(tokenizer: Any, step_token: int, logits: np.ndarray, top: int) -> dict[str, Any]:
    x = logits.astype(np.float64)
    m = x.max()
    lse = m + np.log(np.exp(x - m).sum())
    entry: dict[str, Any] = {"token": tokenizer.decode([step_token]),
                             "logprob": float(x[step_token] - lse),
                             "bytes": list(tokenizer.decode([step_token]).encode("utf-8"))}
    if top:
        idx = np.argpartition(-x, top)[:top]
        idx = idx[np.argsort(-x[idx])]
        entry["top_logprobs"] = [{"token": tokenizer.decode([int(i)]),
                                  "logprob": float(x[i] - lse),
                                  "bytes": list(tokenizer.decode([int(i)]).encode("utf-8"))}
                                 for i in idx]
    return entry


class Server:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.pool = SlotPool(settings)
        self.defaults, self.defaults_source = sampling_defaults(self.pool.model.metadata)
        self.created = int(time.time())

    # ---- request preparation (worker thread) ---------------------------------------------------
    def _prompt_ids(self, req: Any, chat: bool) -> list[int]:
        tok = self.pool.tokenizer
        try:
            if chat:
                from ..chat_template import ChatTemplate
                source = self.pool.model.metadata.get("chat_template")
                if not source:
                    raise HTTPError(400, "this model has no chat template; use /v1/completions")
                template = ChatTemplate(source, bos_token=tok.bos_token, eos_token=tok.eos_token)
                text = template.render([{"role": m.role, "content": m.text()} for m in req.messages])
                return tok.encode(text, add_bos=False)
            if isinstance(req.prompt, list):
                vocab = self.pool.model.info.vocab_size
                bad = [t for t in req.prompt if not 0 <= t < vocab]
                if bad:
                    raise HTTPError(400, f"prompt token id {bad[0]} is outside [0, {vocab})",
                                    param="prompt")
                return list(req.prompt)
            return tok.encode(req.prompt)
        except (ChatTemplateError, TokenizerError, TokenIdError) as e:
            raise HTTPError(400, str(e)) from None

    def _params(self, req: Any) -> SamplerParams:
        d = self.defaults
        pick = (lambda name, ours=None: getattr(req, name) if getattr(req, name) is not None
                else d[ours or name])
        try:
            return SamplerParams(temperature=pick("temperature"), top_k=pick("top_k"),
                                 top_p=pick("top_p"), min_p=pick("min_p"),
                                 repeat_penalty=pick("repeat_penalty"),
                                 seed=req.seed if req.seed is not None
                                 else int(uuid.uuid4().int % 2**63)).validate()
        except InvalidArgumentError as e:
            raise HTTPError(400, str(e)) from None

    def prepare(self, req: Any, chat: bool) -> dict[str, Any]:
        if req.n != 1:
            raise HTTPError(400, "only n=1 is supported; send several requests instead", param="n")
        ids = self._prompt_ids(req, chat)
        n_ctx = self.pool.n_ctx
        if not ids:
            raise HTTPError(400, "the prompt is empty", param="prompt")
        if len(ids) >= n_ctx:
            raise HTTPError(400, f"the prompt has {len(ids)} tokens but the context holds "
                                 f"{n_ctx}; shorten the prompt (or start the server with a larger "
                                 "--ctx)", param="messages" if chat else "prompt",
                            code="context_length_exceeded")
        limit = req.token_limit()
        room = n_ctx - len(ids)
        if limit is not None and limit > room:
            raise HTTPError(400, f"max_tokens={limit} does not fit: the prompt uses {len(ids)} of "
                                 f"{n_ctx} context tokens; set max_tokens <= {room}",
                            param="max_tokens", code="context_length_exceeded")
        stops = req.stops()
        if len(stops) > 16:
            raise HTTPError(400, "at most 16 stop strings", param="stop")
        params = self._params(req)
        try:
            constraint = constraint_for(self.pool.model.metadata, self.pool.model.info.vocab_size,
                                        req.response_format, req.grammar)
        except (GrammarError, InvalidArgumentError) as e:
            raise HTTPError(400, str(e), param="response_format" if req.response_format
                            else "grammar") from None
        top = 0
        if chat and req.logprobs:
            top = req.top_logprobs or 0
        elif not chat and req.logprobs is not None:
            top = req.logprobs
        return dict(ids=ids, max_tokens=room if limit is None else limit, params=params,
                    stops=stops, constraint=constraint, logprobs=(chat and req.logprobs) or
                    (not chat and req.logprobs is not None), top=top,
                    penalties=Penalties(req.presence_penalty, req.frequency_penalty),
                    speculative=req.speculative or self.settings.speculative,
                    cancel=threading.Event())

    # ---- generation (worker thread) ------------------------------------------------------------
    def generate(self, slot: Slot, job: dict[str, Any], emit: Callable[[Any], None]) -> None:
        """Runs on a slot's worker thread; emit() hands events to the event loop:
        ("text", str, [logprob entries]) then ("done", Timings) or ("error", HTTPError)."""
        tok = self.pool.tokenizer
        timings = Timings()
        try:
            draft = draft_for(job["speculative"], job["params"], slot.draft)
            session = slot.session
            from ..stop_strings import StopStringFilter
            decoder = tok.stream(job["ids"])
            stop_filter = StopStringFilter(job["stops"])
            entries: list[dict[str, Any]] = []
            steps = session.steps(job["ids"], job["max_tokens"], job["params"],
                                  constraint=job["constraint"], draft=draft,
                                  penalties=job["penalties"], timings=timings,
                                  should_stop=job["cancel"].is_set)
            try:
                for step in steps:
                    if job["logprobs"]:
                        entries.append(_logprob_entry(tok, step.token, step.logits, job["top"]))
                    text = stop_filter.push(decoder.step(step.token))
                    if text or (entries and stop_filter.stopped):
                        emit(("text", text, entries))
                        entries = []
                    if stop_filter.stopped:
                        timings.finish_reason = "stop"
                        break
                    if job["cancel"].is_set():
                        timings.finish_reason = "cancelled"
                        break
                else:
                    tail = stop_filter.flush()
                    if tail or entries:
                        emit(("text", tail, entries))
            finally:
                steps.close()
            emit(("done", timings))
        except GrammarError as e:
            emit(("error", HTTPError(400, str(e), param="grammar", code="grammar_error")))
        except (ContextOverflowError, InvalidArgumentError, TokenIdError) as e:
            emit(("error", HTTPError(400, str(e))))
        except Exception as e:  # noqa: BLE001 — one request's failure must not end the server
            emit(("error", HTTPError(500, f"generation failed: {type(e).__name__}: {e}",
                                     kind="server_error")))

    async def run_job(self, request: Request, job: dict[str, Any],
                      stream: bool = True) -> tuple[Slot, EventPipe]:
        """Take a slot (503 when the queue is full) and start generating on a worker thread.
        The slot is released when the worker finishes, never earlier, so a cancelled request
        cannot hand a slot whose cache is still being written to the next one. The events come
        through the returned pipe (each text event wakes the loop only when stream is true)."""
        try:
            slot = await self.pool.acquire(job["ids"], request.is_disconnected)
        except QueueFull:
            raise HTTPError(503, f"all {len(self.pool.slots)} slots are busy and "
                                 f"{self.settings.queue_size} requests are waiting; retry later",
                            kind="server_error", code="queue_full",
                            headers={"Retry-After": str(self.settings.retry_after_s)}) from None
        loop = asyncio.get_running_loop()
        pipe = EventPipe(loop, wake_on_text=stream)
        future = loop.run_in_executor(self.pool.executor, self.generate, slot, job, pipe.put)

        def finished(_: Any) -> None:
            asyncio.ensure_future(self.pool.release(slot))
        future.add_done_callback(finished)
        return slot, pipe


_MARK = "\x00edgert-text\x00"  # stands for a chunk's text while its serialised form is cut


def _finish_reason(t: Timings) -> str:
    return "stop" if t.finish_reason in ("stop", "cancelled") else "length"


def create_app(settings: ServerSettings, server: Optional[Server] = None) -> FastAPI:
    srv = server or Server(settings)
    app = FastAPI(title="edgert", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.server = srv

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, e: HTTPError) -> JSONResponse:
        return e.response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        busy = sum(s.busy for s in srv.pool.slots)
        return {"status": "ok", "slots_idle": len(srv.pool.slots) - busy,
                "slots_processing": busy, "queued": srv.pool.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        info = srv.pool.model.info
        return {"object": "list", "data": [{
            "id": settings.model_id, "object": "model", "created": srv.created,
            "owned_by": "edgert", "meta": {"n_ctx": srv.pool.n_ctx, "vocab_size": info.vocab_size,
                                           "n_params": info.n_params, "slots": len(srv.pool.slots),
                                           "sampling_defaults": srv.defaults,
                                           "sampling_defaults_from": srv.defaults_source}}]}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        req = await _parse(request, TokenizeRequest)
        try:
            return {"tokens": srv.pool.tokenizer.encode(req.content, add_bos=req.add_special)}
        except TokenizerError as e:
            raise HTTPError(400, str(e), param="content") from None

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        req = await _parse(request, DetokenizeRequest)
        vocab = srv.pool.model.info.vocab_size
        bad = [t for t in req.tokens if not 0 <= t < vocab]
        if bad:
            raise HTTPError(400, f"token id {bad[0]} is outside [0, {vocab})", param="tokens")
        return {"content": srv.pool.tokenizer.decode(req.tokens)}

    async def complete(request: Request, chat: bool) -> Response:
        req = await _parse(request, ChatCompletionRequest if chat else CompletionRequest)
        job = await asyncio.get_running_loop().run_in_executor(None, srv.prepare, req, chat)
        slot, pipe = await srv.run_job(request, job, stream=req.stream)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        model_id = settings.model_id
        n_prompt = len(job["ids"])

        def usage(t: Timings) -> dict[str, Any]:
            return {"prompt_tokens": n_prompt, "completion_tokens": t.n_generated,
                    "total_tokens": n_prompt + t.n_generated,
                    "prompt_tokens_details": {"cached_tokens": t.n_reused}}

        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))

            def chunk(delta_text: Optional[str], entries: list, finish: Optional[str],
                      first: bool = False) -> dict[str, Any]:
                if chat:
                    delta: dict[str, Any] = {}
                    if first:
                        delta["role"] = "assistant"
                    if delta_text is not None:
                        delta["content"] = delta_text
                    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish,
                                              "logprobs": {"content": entries} if entries else None}
                    obj = "chat.completion.chunk"
                else:
                    choice = {"index": 0, "text": delta_text or "", "finish_reason": finish,
                              "logprobs": _completion_logprobs(entries) if entries else None}
                    obj = "text_completion"
                return {"id": rid, "object": obj, "created": created, "model": model_id,
                        "choices": [choice]}

            # A text chunk without logprobs is the same bytes every time but for its text: cut
            # the serialised chunk around a placeholder once, then each token costs one string
            # escape (json.dumps of a str) instead of serialising the whole dict.
            head, tail = json.dumps(chunk(_MARK, [], None)).split(json.dumps(_MARK))
            head, tail = "data: " + head, tail + "\n\n"

            def text_event(text: str, entries: list) -> str:
                if entries:
                    return f"data: {json.dumps(chunk(text, entries, None))}\n\n"
                return head + json.dumps(text) + tail

            async def events() -> AsyncIterator[str]:
                try:
                    if chat:
                        yield f"data: {json.dumps(chunk('', [], None, first=True))}\n\n"
                    while True:
                        out: list[str] = []
                        last = None
                        for ev in await pipe.get_all():
                            if ev[0] == "text":
                                out.append(text_event(ev[1], ev[2]))
                            else:
                                last = ev
                                break
                        if last is None:
                            yield "".join(out)
                            continue
                        if last[0] == "error":
                            err = last[1]
                            out.append("data: " + json.dumps({"error": {
                                "message": err.message, "type": err.kind, "param": err.param,
                                "code": err.code}}) + "\n\n")
                        else:
                            t: Timings = last[1]
                            final = chunk(None, [], _finish_reason(t))
                            final["timings"] = _timings_dict(t)
                            out.append(f"data: {json.dumps(final)}\n\n")
                            if include_usage:
                                u = {"id": rid, "object": final["object"], "created": created,
                                     "model": model_id, "choices": [], "usage": usage(t),
                                     "timings": _timings_dict(t)}
                                out.append(f"data: {json.dumps(u)}\n\n")
                        out.append("data: [DONE]\n\n")
                        yield "".join(out)
                        break
                finally:
                    job["cancel"].set()  # a client gone mid-stream stops the worker (no-op after)

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        parts: list[str] = []
        entries: list[dict[str, Any]] = []
        try:
            t = None
            while t is None:
                got = await pipe.get_all(timeout=1.0)
                if not got:
                    if await request.is_disconnected():
                        job["cancel"].set()
                        return Response(status_code=499)
                    continue
                for ev in got:
                    if ev[0] == "text":
                        parts.append(ev[1])
                        entries += ev[2]
                    elif ev[0] == "error":
                        raise ev[1]
                    else:
                        t = ev[1]
                        break
        finally:
            job["cancel"].set()  # this job's own event: the slot may already serve another
        text = "".join(parts)
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": _finish_reason(t),
                                      "logprobs": {"content": entries} if job["logprobs"] else None}
            obj = "chat.completion"
        else:
            if getattr(req, "echo", False) and isinstance(req.prompt, str):
                text = req.prompt + text
            choice = {"index": 0, "text": text, "finish_reason": _finish_reason(t),
                      "logprobs": _completion_logprobs(entries) if job["logprobs"] else None}
            obj = "text_completion"
        return JSONResponse({"id": rid, "object": obj, "created": created, "model": model_id,
                             "choices": [choice], "usage": usage(t), "timings": _timings_dict(t)})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    app.add_middleware(ApiKey, api_key=settings.api_key)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _completion_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The legacy completions logprobs object."""
    return {"tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])}
                             for e in entries],
            "text_offset": []}
