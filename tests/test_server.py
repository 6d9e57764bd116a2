"""`edgert serve` (edgert.server) driven as apps drive it: the official `openai` client
(streaming and not) against in-process LLM.chat / LLM.generate at temperature 0, raw HTTP
(httpx) for every error case, and a bounded load test on loopback: concurrent streaming clients,
a client that disconnects mid-stream, an oversized body and a prompt longer than the context —
the server keeps answering and every answer equals the in-process one, so no slot's KV state
leaks into another's output."""
from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import jsonschema
import openai
import pytest
import uvicorn

from edgert import LLM
from edgert.server import ServerSettings
from edgert.server.app import create_app

N_CTX = 512
QUESTIONS = ["What is the capital of France?", "Name three colours.", "What is 2 + 2?",
             "Say hello in Spanish.", "What do bees make?", "Name a planet."]


APPS: dict[int, object] = {}  # port -> the app serving it (to look at its slots)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(model: Path, **kw) -> Iterator[str]:
    settings = ServerSettings(model=str(model), port=_free_port(), n_ctx=N_CTX, **kw)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    APPS[settings.port] = app
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        app.state.server.pool.close()


@pytest.fixture(scope="module")
def reference(smollm2_edgt: Path):
    """In-process answers: LLM.chat at temperature 0, the same n_ctx."""
    with LLM(smollm2_edgt, n_ctx=N_CTX, n_threads=2) as llm:
        def chat(q: str, n: int = 24) -> tuple[str, int]:
            text = llm.chat([{"role": "user", "content": q}], max_tokens=n)
            return text, llm.last_timings.n_generated

        def complete(p: str, n: int = 16) -> tuple[str, int]:
            text = llm.generate(p, max_tokens=n)
            return text, llm.last_timings.n_generated
        yield chat, complete


@pytest.fixture(scope="module")
def base_url(smollm2_edgt: Path) -> Iterator[str]:
    with serve(smollm2_edgt, parallel=2, queue_size=8, max_body_bytes=64 * 1024) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.mark.slow
def test_openai_client_chat_matches_llm_chat(client: openai.OpenAI, reference) -> None:
    chat, _ = reference
    for q in QUESTIONS[:2]:
        expected, n_tokens = chat(q)
        r = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=24,
                                           messages=[{"role": "user", "content": q}])
        assert r.choices[0].message.content == expected
        assert r.usage.completion_tokens == n_tokens and r.usage.prompt_tokens > 0
        assert r.choices[0].finish_reason in ("stop", "length")
        timings = r.model_extra["timings"]
        assert timings["predicted_n"] == n_tokens and timings["predicted_per_second"] > 0
        # streamed: the deltas join to the same text; usage arrives when asked for
        stream = client.chat.completions.create(
            model="smollm2", temperature=0, max_tokens=24, stream=True,
            stream_options={"include_usage": True}, messages=[{"role": "user", "content": q}])
        parts, usage, finish = [], None, None
        for ev in stream:
            if ev.choices:
                parts.append(ev.choices[0].delta.content or "")
                finish = ev.choices[0].finish_reason or finish
            if ev.usage:
                usage = ev.usage
        assert "".join(parts) == expected and finish in ("stop", "length")
        assert usage is not None and usage.completion_tokens == n_tokens


@pytest.mark.slow
def test_openai_client_completions_match_llm_generate(client: openai.OpenAI, reference) -> None:
    _, complete = reference
    expected, n_tokens = complete("The capital of France is")
    r = client.completions.create(model="smollm2", prompt="The capital of France is",
                                  temperature=0, max_tokens=16, logprobs=2)
    assert r.choices[0].text == expected and r.usage.completion_tokens == n_tokens
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == n_tokens and all(x <= 0 for x in lp.token_logprobs)
    # greedy: each chosen token is its position's most likely one
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen == pytest.approx(max(top.values()), abs=1e-4)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=16,
        stream=True) if c.choices)
    assert streamed == expected


def test_models_health_tokenize(base_url: str, smollm2_edgt: Path) -> None:
    models = httpx.get(base_url + "/v1/models").json()
    assert models["data"][0]["id"] == smollm2_edgt.stem
    assert httpx.get(base_url + "/health").json()["status"] == "ok"
    toks = httpx.post(base_url + "/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert toks and httpx.post(base_url + "/detokenize",
                               json={"tokens": toks}).json()["content"] == "Hello world"


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["message"] and err["type"]
    return err


def test_bad_input_gets_openai_style_errors(base_url: str) -> None:
    url = base_url + "/v1/chat/completions"
    msg = [{"role": "user", "content": "hi"}]
    _error(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
    _error(httpx.post(url, json=["a list"]), 400)
    assert _error(httpx.post(url, json={"messages": msg, "top_p": 2}), 400)["message"].count("top_p")
    assert _error(httpx.post(url, json={"messages": msg, "temperature": -1}), 400)
    assert _error(httpx.post(url, json={"messages": []}), 400)["param"] == "messages"
    assert _error(httpx.post(url, json={"messages": msg, "n": 2}), 400)["param"] == "n"
    err = _error(httpx.post(url, json={"messages": msg, "max_tokens": 10_000}), 400)
    assert err["param"] == "max_tokens" and "max_tokens <=" in err["message"]
    err = _error(httpx.post(url, json={"messages": [{"role": "user", "content": "word " * 600}]}), 400)
    assert err["code"] == "context_length_exceeded"
    err = _error(httpx.post(base_url + "/v1/completions", json={"prompt": [1, 10**9]}), 400)
    assert "outside" in err["message"]
    _error(httpx.post(url, json={"messages": msg, "response_format": {"type": "xml"}}), 400)
    # unknown fields are ignored
    r = httpx.post(url, json={"messages": msg, "max_tokens": 2, "temperature": 0,
                              "some_future_field": {"x": 1}}, timeout=120)
    assert r.status_code == 200, r.text
    # a body over the limit is refused before it is read whole
    _error(httpx.post(url, content=b"x" * (65 * 1024), headers={"content-type": "application/json"}),
           413)


def test_json_schema_through_the_server(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                               "population": {"type": "integer", "minimum": 0,
                                                              "maximum": 10**9}},
              "required": ["city", "population"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "The largest city in France, as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    impossible = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "integer", "minimum": 5, "maximum": 3}}}
    with pytest.raises(openai.BadRequestError, match="nsatisfiable"):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "x"}],
                                       response_format=impossible)


def test_api_key_and_queue_full(smollm2_edgt: Path) -> None:
    with serve(smollm2_edgt, parallel=1, queue_size=0, api_key="sesame") as url:
        # A grammar keeps the first request generating for hundreds of tokens (no early EOS).
        body = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "stream": True,
                "grammar": {"type": "regex", "value": "(ab, ){400}"}}
        _error(httpx.post(url + "/v1/completions", json=body), 401)
        _error(httpx.post(url + "/v1/completions", json=body,
                          headers={"Authorization": "Bearer wrong"}), 401)
        assert httpx.get(url + "/health").status_code == 200  # health needs no key
        auth = {"Authorization": "Bearer sesame"}
        with httpx.Client(timeout=60) as c:
            with c.stream("POST", url + "/v1/completions", json=body, headers=auth) as first:
                assert first.status_code == 200
                # Keep the iterator: a dropped one is closed at once, which closes the
                # connection, and the server would cancel the generation under this check.
                lines = first.iter_lines()
                next(lines)  # the only slot is now generating
                r = c.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 1},
                           headers=auth)
                assert _error(r, 503)["code"] == "queue_full"
                assert r.headers["Retry-After"] == "1"
                del lines
        # the client hung up after one chunk: generation stopped within a few tokens instead of
        # running on to 400 (the slot's cache holds what was generated)
        slot = APPS[int(url.rsplit(":", 1)[1])].state.server.pool.slots[0]
        deadline = time.time() + 30
        while slot.busy and time.time() < deadline:
            time.sleep(0.05)
        assert not slot.busy
        assert len(slot.session.cached) < len(slot.session.tokenizer.encode("Once upon a time")) + 100
        # the slot serves again
        deadline = time.time() + 30
        while True:
            r = httpx.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 1},
                           headers=auth, timeout=60)
            if r.status_code == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.text


@pytest.mark.slow
def test_load_concurrent_streams_disconnects_and_bad_requests(base_url: str, reference) -> None:
    """Bounded: 6 streaming clients on 2 slots (queue 8) with different prompts, a client that
    hangs up after its first chunk, an oversized body and an over-long prompt in between. Every
    answer must equal the in-process one (a slot's reused cache never leaks another's text)."""
    chat, _ = reference
    expected = {q: chat(q, 20)[0] for q in QUESTIONS}
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    url = base_url + "/v1/chat/completions"

    def stream_one(q: str) -> None:
        try:
            body = {"messages": [{"role": "user", "content": q}], "max_tokens": 20,
                    "temperature": 0, "stream": True}
            parts = []
            with httpx.stream("POST", url, json=body, timeout=300) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        ev = json.loads(line[6:])
                        assert "error" not in ev, ev
                        # every chunk has the whole shape (text chunks are cut from a template)
                        assert set(ev) >= {"id", "object", "created", "model", "choices"}, ev
                        assert ev["object"] == "chat.completion.chunk", ev
                        assert set(ev["choices"][0]) == {"index", "delta", "finish_reason",
                                                         "logprobs"}, ev
                        parts.append(ev["choices"][0]["delta"].get("content") or "")
            results[q] = "".join(parts)
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    def hang_up() -> None:
        body = {"messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 300, "temperature": 0, "stream": True}
        with httpx.stream("POST", url, json=body, timeout=300) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i >= 2:
                    break  # closes the connection mid-stream

    threads = [threading.Thread(target=hang_up)]
    threads += [threading.Thread(target=stream_one, args=(q,)) for q in QUESTIONS]
    for t in threads:
        t.start()
    _error(httpx.post(url, content=b"x" * (100 * 1024), headers={"content-type": "application/json"}),
           413)
    _error(httpx.post(url, json={"messages": [{"role": "user", "content": "word " * 2000}]}), 400)
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "load test did not finish"
    assert not errors, errors
    assert results == expected
    # still serving, and the hung-up request's slot came back
    health = httpx.get(base_url + "/health").json()
    assert health["status"] == "ok"
    r = httpx.post(url, json={"messages": [{"role": "user", "content": QUESTIONS[0]}],
                              "max_tokens": 20, "temperature": 0}, timeout=300)
    assert r.json()["choices"][0]["message"]["content"] == expected[QUESTIONS[0]]


def test_event_pipe_coalesces_wakeups() -> None:
    """The worker-to-loop handoff: one loop wake-up per batch of events (not per token), every
    event delivered once and in order, and a non-streamed request woken only by its end."""
    import asyncio

    from edgert.server.app import EventPipe

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wakes = []
        real = loop.call_soon_threadsafe

        def counting(cb, *a):  # noqa: ANN001, ANN002
            if getattr(cb, "__self__", None) is pipe or getattr(cb, "__self__", None) is quiet:
                wakes.append(cb)
            return real(cb, *a)
        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        pipe = EventPipe(loop)
        quiet = EventPipe(loop, wake_on_text=False)

        def worker() -> None:
            for i in range(50):
                pipe.put(("text", str(i), []))
            pipe.put(("done", None))
        # all 51 events land while the loop is busy (blocked here): one wake-up, one batch
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        got = await pipe.get_all()
        assert [e[1] for e in got] == [str(i) for i in range(50)] + [None] and len(wakes) == 1
        # one at a time, each after the loop waits: one wake-up each
        wakes.clear()
        seen = []
        for i in range(5):
            loop.call_later(0.01, threading.Thread(target=pipe.put,
                                                   args=(("text", str(i), []),)).start)
            seen += [e[1] for e in await pipe.get_all()]
        assert seen == ["0", "1", "2", "3", "4"] and len(wakes) == 5
        assert await pipe.get_all(timeout=0.05) == []
        # not streamed: text events wake nobody; the end returns everything
        wakes.clear()
        for i in range(3):
            quiet.put(("text", str(i), []))
        assert await quiet.get_all(timeout=0.05) == [] and not wakes
        threading.Thread(target=quiet.put, args=(("done", None),)).start()
        assert [e[0] for e in await quiet.get_all(timeout=10)] == ["text"] * 3 + ["done"]
        assert len(wakes) == 1

    asyncio.run(main())


def test_edgert_serve_command(stories_edgt: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    # Without the extra: one line saying what to install.
    code = ("import sys; sys.modules['fastapi'] = None; from edgert.cli import main; "
            f"sys.exit(main(['serve', {str(stories_edgt)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and 'pip install "edgert[server]"' in r.stderr, r.stderr
    # Bound beyond loopback without --api-key: it warns, and serves.
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "edgert", "serve", str(stories_edgt), "--host",
                          "0.0.0.0", "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and p.poll() is None, "edgert serve did not start"
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                       json={"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
        assert r.json()["choices"][0]["text"].startswith(", there was")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
    assert "warning" in err and "--api-key" in err


def test_decode_batcher_shares_passes_and_keeps_every_row(stories_edgt: Path) -> None:
    """edgert.server.batcher: four threads decode greedily over their own contexts of one model,
    their steps sharing batched passes; each must get exactly the tokens its context gives alone,
    passes must really have been shared, and a context that fills up gets its own error while
    the others go on."""
    import numpy as np

    from edgert.errors import ContextOverflowError
    from edgert.model import ContextParams, Model
    from edgert.server.batcher import DecodeBatcher

    starts, n_steps = [5, 17, 40, 99], 24
    with Model(stories_edgt) as model:
        def alone(start: int) -> list[int]:
            with model.new_context(ContextParams(n_ctx=64, n_threads=1)) as ctx:
                out, tok = [], start
                for _ in range(n_steps):
                    tok = int(np.argmax(ctx.eval([tok])))
                    out.append(tok)
                return out
        want = [alone(s) for s in starts]
        batcher = DecodeBatcher(8)
        got: dict[int, list[int]] = {}
        errors: dict[int, BaseException] = {}
        # the last context holds only 10 positions: it overflows midway
        ctxs = [model.new_context(ContextParams(n_ctx=64 if i < 3 else 10, n_threads=1))
                for i in range(4)]

        ready = threading.Barrier(4)

        def run(i: int) -> None:
            batcher.enter()
            ready.wait()  # all four generations in progress before the first step
            try:
                out, tok = [], starts[i]
                for _ in range(n_steps):
                    tok = int(np.argmax(batcher.decode(ctxs[i], tok)))
                    out.append(tok)
                got[i] = out
            except BaseException as e:  # noqa: BLE001 - checked below
                errors[i] = e
            finally:
                batcher.leave()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for c in ctxs:
            c.close()
    assert [got.get(i) for i in range(3)] == want[:3]
    assert set(errors) == {3} and isinstance(errors[3], ContextOverflowError)
    # 82 steps in all; a pass per step would be 82 passes
    assert batcher.batched_rows > 0 and batcher.passes < 3 * n_steps, (batcher.passes,
                                                                       batcher.batched_rows)


def _penalized_greedy(model_path: Path, ids: list[int], n: int, presence: float,
                      frequency: float, eos: set[int]) -> list[int]:
    """OpenAI's penalties written out independently: logit -= presence * [count > 0] +
    frequency * count over the tokens generated so far; then argmax."""
    import numpy as np

    from edgert.model import ContextParams, Model
    out: list[int] = []
    counts: dict[int, int] = {}
    with Model(model_path) as m, m.new_context(ContextParams(n_ctx=N_CTX, n_threads=2)) as ctx:
        logits = ctx.eval(ids)
        for _ in range(n):
            z = logits.astype(np.float64).copy()
            for t, c in counts.items():
                z[t] -= presence + frequency * c
            tok = int(np.argmax(z))
            if tok in eos:
                break
            out.append(tok)
            counts[tok] = counts.get(tok, 0) + 1
            logits = ctx.eval([tok])
    return out


def test_presence_and_frequency_penalties(base_url: str, smollm2_edgt: Path) -> None:
    """A prompt SmolLM2 answers with repetition: with penalties, LLM.generate and the server's
    /v1/completions give the tokens of an independent penalized greedy loop (and not the
    unpenalized ones)."""
    prompt, n = "one two three one two three one two three one two three", 24
    with LLM(smollm2_edgt, n_ctx=N_CTX, n_threads=2) as llm:
        ids = llm.tokenize(prompt)
        eos = set(llm.tokenizer.eos_token_ids)
        want = llm.detokenize(_penalized_greedy(smollm2_edgt, ids, n, 0.5, 1.5, eos))
        plain = llm.detokenize(_penalized_greedy(smollm2_edgt, ids, n, 0.0, 0.0, eos))
        assert want != plain  # the penalties matter on this prompt
        got = llm.generate(prompt, max_tokens=n, presence_penalty=0.5, frequency_penalty=1.5)
        assert got == want
    r = httpx.post(base_url + "/v1/completions", timeout=300, json={
        "prompt": prompt, "max_tokens": n, "temperature": 0, "presence_penalty": 0.5,
        "frequency_penalty": 1.5, "repeat_penalty": 1.0})
    assert r.json()["choices"][0]["text"] == want


def test_growing_chat_reuses_its_slot_cache(client: openai.OpenAI) -> None:
    """The second turn of a conversation comes back to the slot holding the first and evaluates
    only its new tokens (usage.prompt_tokens_details.cached_tokens, timings.prompt_cached)."""
    msgs = [{"role": "user", "content": "Name a large animal."}]
    first = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=8,
                                           messages=msgs)
    msgs += [{"role": "assistant", "content": first.choices[0].message.content},
             {"role": "user", "content": "And a small one?"}]
    second = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=8,
                                            messages=msgs)
    t = second.model_extra["timings"]
    assert t["prompt_cached"] >= first.usage.prompt_tokens
    assert t["prompt_n"] == second.usage.prompt_tokens - t["prompt_cached"]
    assert second.usage.prompt_tokens_details.cached_tokens == t["prompt_cached"]
