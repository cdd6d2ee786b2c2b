"""Hostile bytes through the Gemini translations (the fuzz of
tests/test_hostile_upstream.py, for Gemini): any Gemini upstream body toward
every client dialect, and any OpenAI upstream body toward a Gemini-format
client. Whatever the upstream sends, the client gets a well-formed answer
in its dialect: a complete stream, an HTTP error before the first event, or
an error event after it; never a 500, never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.app import create_app, server_options
from gateway.metrics import Metrics
from tests.helpers import settings_from
from tests.test_hostile_upstream import (
    CHECKS,
    HYPOTHESIS,
    _check_whole_answer,
    _completion,
    _events,
    _sse,
    flood,
    json_values,
    openai_bodies,
    raw_tail,
)

FUZZ = settings(HYPOTHESIS, max_examples=25)
"""Fewer examples than the OpenAI/Anthropic fuzz: the decoder under the
Gemini provider is the same SSE decoder, fuzzed there."""
GEMINI_ROUTE = "/v1beta/models/{model}:streamGenerateContent?alt=sse"
WHOLE_ROUTE = "/v1beta/models/{model}:generateContent"


def _gemini_event() -> st.SearchStrategy[Any]:
    call = st.fixed_dictionaries(
        {"name": json_values}, optional={"args": json_values, "id": json_values}
    )
    part = st.fixed_dictionaries(
        {},
        optional={"text": json_values, "thought": json_values, "functionCall": call | json_values},
    )
    content = st.fixed_dictionaries(
        {}, optional={"parts": st.lists(part, max_size=3) | json_values, "role": json_values}
    )
    candidate = st.fixed_dictionaries(
        {},
        optional={
            "content": content | json_values,
            "finishReason": st.sampled_from(["STOP", "SAFETY", "MAX_TOKENS"]) | json_values,
            "index": json_values,
        },
    )
    usage = st.fixed_dictionaries(
        {}, optional={"promptTokenCount": json_values, "candidatesTokenCount": json_values}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "candidates": st.lists(candidate, max_size=2) | json_values,
            "usageMetadata": usage | json_values,
            "promptFeedback": json_values,
            "error": json_values,
        },
    )


def gemini_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(_gemini_event(), min_size=1, max_size=4)
    return st.builds(
        lambda ev, lines, fl, end: _sse(ev, named=False, lines=lines) + fl + end,
        events, st.booleans(), st.just(b"") | flood, st.just(b"") | raw_tail,
    )  # fmt: skip


def gemini_whole_bodies() -> st.SearchStrategy[bytes]:
    return (_gemini_event() | json_values).map(orjson.dumps) | st.binary(max_size=64)


@dataclass
class Rig:
    """The gateway, a Gemini upstream (model ``gem``) and an OpenAI one
    (``up``), on one loop for the module; each upstream answers with
    :attr:`body`, in two writes (a split inside an event)."""

    loop: asyncio.AbstractEventLoop
    gateway_url: str = ""
    body: bytes = b""
    servers: list[TestServer] = field(default_factory=list, repr=False)

    async def _upstream(self, request: web.Request) -> web.StreamResponse:
        payload = orjson.loads(await request.read())
        streaming = request.path.endswith(":streamGenerateContent") or payload.get("stream")
        ctype = "text/event-stream" if streaming else "application/json"
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        await resp.prepare(request)
        half = len(self.body) // 2
        for piece in (self.body[:half], self.body[half:]):
            if piece:
                await resp.write(piece)
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", self._upstream)
        upstream.router.add_post("/v1beta/models/{m}:streamGenerateContent", self._upstream)
        upstream.router.add_post("/v1beta/models/{m}:generateContent", self._upstream)
        up = TestServer(upstream)
        await up.start_server()
        base = str(up.make_url(""))
        limit = {"max_response_bytes": 65536, "api_key_env": ""}
        settings = settings_from(
            models=[
                {"name": "gem", "provider": "gemini", "base_url": base + "/v1beta", **limit},
                {"name": "up", "provider": "openai", "base_url": base + "/v1", **limit},
            ],
            stream={"idle_timeout_s": 2, "ttft_timeout_s": 2, "heartbeat_interval_s": 10},
        )
        gw = TestServer(create_app(settings, metrics=Metrics.create(CollectorRegistry())))
        options = server_options(settings)
        assert options.pop("handler_cancellation") is True
        await gw.start_server(**options)
        self.servers = [gw, up]
        self.gateway_url = str(gw.make_url(""))

    async def ask(self, path: str, model: str, stream: bool = True) -> tuple[int, bytes]:
        body: dict[str, Any] = {"model": model, "stream": stream, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        if path == "/v1/responses":
            body = {"model": model, "stream": stream, "input": "hi", "max_output_tokens": 16}
        elif path.startswith("/v1beta/"):
            path = path.format(model=model)
            body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as session,
            session.post(self.gateway_url + path, json=body) as resp,
        ):
            return resp.status, await resp.read()

    async def stop(self) -> None:
        for server in self.servers:
            await server.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    r = Rig(loop)
    try:
        loop.run_until_complete(r.start())
        yield r
    finally:
        loop.run_until_complete(r.stop())
        loop.close()


def _google_error(text: bytes) -> None:
    error = orjson.loads(text)["error"]
    assert isinstance(error["code"], int) and isinstance(error["status"], str), error


def _check_gemini_answer(status: int, text: bytes) -> None:
    """Google's error object before the first event; otherwise one
    ``data:`` line per event (``google-genai`` reads line by line), each a
    JSON object, the last with a finish reason or an error."""
    assert status != 500 and (status == 200 or status >= 400), (status, text)
    if status != 200:
        _google_error(text)
        return
    lines = [line for line in text.split(b"\r\n") if line]
    assert all(line.startswith(b"data: {") for line in lines), text[-300:]
    last = orjson.loads(_events(text)[-1].data)
    assert "error" in last or last["candidates"][0]["finishReason"], last


def _check_status(check: Any) -> Any:
    """A client dialect's check, with the upstream's own error code
    relayed (a Gemini error object names its HTTP status)."""

    def run(status: int, text: bytes) -> None:
        if status in (400, 401, 403, 404, 408, 413, 422, 429):
            return
        check(status, text)

    return run


STREAM_CHECKS = {**{p: _check_status(c) for p, c in CHECKS.items()},
                 GEMINI_ROUTE: _check_gemini_answer}  # fmt: skip


@pytest.mark.parametrize("path", list(STREAM_CHECKS))
@FUZZ
@given(data=st.data())
def test_any_gemini_upstream_bytes(rig: Rig, path: str, data: st.DataObject) -> None:
    rig.body = data.draw(gemini_bodies(), label="upstream body")
    status, text = rig.loop.run_until_complete(rig.ask(path, "gem"))
    STREAM_CHECKS[path](status, text)


@FUZZ
@given(body=openai_bodies())
def test_any_openai_bytes_toward_a_gemini_client(rig: Rig, body: bytes) -> None:
    rig.body = body
    status, text = rig.loop.run_until_complete(rig.ask(GEMINI_ROUTE, "up"))
    _check_gemini_answer(status, text)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", WHOLE_ROUTE])
@settings(HYPOTHESIS, max_examples=15)
@given(body=gemini_whole_bodies())
def test_any_non_streaming_gemini_body(rig: Rig, path: str, body: bytes) -> None:
    rig.body = body
    status, text = rig.loop.run_until_complete(rig.ask(path, "gem", stream=False))
    if path == WHOLE_ROUTE:
        _check_gemini_answer(status, text) if status != 200 else orjson.loads(text)["candidates"]
    elif status not in (400, 401, 403, 404, 408, 413, 422, 429):
        _check_whole_answer(path, status, text, "gem")


@settings(HYPOTHESIS, max_examples=15)
@given(body=(_completion().map(orjson.dumps)) | st.binary(max_size=64))
def test_any_openai_completion_toward_a_gemini_client(rig: Rig, body: bytes) -> None:
    rig.body = body
    status, text = rig.loop.run_until_complete(rig.ask(WHOLE_ROUTE, "up", stream=False))
    if status == 200:
        assert isinstance(orjson.loads(text)["candidates"], list)
    else:
        _check_gemini_answer(status, text)
