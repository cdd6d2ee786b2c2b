"""Hostile upstream bytes: every value from an upstream is untrusted input.

Hypothesis drives each test itself (so a failure shrinks to the smallest
upstream body that breaks the gateway). The gateway and a fake upstream that
answers with the generated body run on real sockets, on one event loop kept
for the whole module. Whatever the upstream sends, the client gets a
well-formed answer in its dialect: a complete stream, a 502 before the first
event, or an error event after it; never a 500, never a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.app import create_app, server_options
from gateway.metrics import Metrics
from tests.helpers import settings_from

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _openai_chunk() -> st.SearchStrategy[Any]:
    delta = st.fixed_dictionaries(
        {},
        optional={
            "content": json_values,
            "role": json_values,
            "tool_calls": json_values,
            "reasoning_content": json_values,
        },
    )
    choice = st.fixed_dictionaries(
        {"index": st.integers(0, 3) | json_values, "delta": delta | json_values},
        optional={"finish_reason": json_values},
    )
    return st.fixed_dictionaries(
        {"id": st.just("c1"), "object": st.just("chat.completion.chunk")},
        optional={"choices": st.lists(choice, max_size=2) | json_values, "usage": json_values},
    )


ANTHROPIC_TYPES = (
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
)


def _anthropic_event() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(ANTHROPIC_TYPES)},
        optional={
            "message": json_values,
            "index": json_values,
            "content_block": json_values,
            "delta": json_values | st.fixed_dictionaries({}, optional={"type": json_values}),
            "usage": json_values,
            "error": json_values,
        },
    )


def _sse(events: list[Any], named: bool) -> bytes:
    out = b""
    for event in events:
        if named and isinstance(event, dict):
            out += b"event: " + str(event.get("type")).encode() + b"\n"
        out += b"data: " + orjson.dumps(event) + b"\n\n"
    return out


raw_tail = st.binary(max_size=64) | st.sampled_from(
    [b"data: {\n\n", b"data: [1]\n\n", b"data: \xff\xfe\n\n"]
)


def openai_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(_openai_chunk(), min_size=1, max_size=4)
    ending = st.sampled_from([b"data: [DONE]\n\n", b""]) | raw_tail
    return st.builds(lambda ev, end: _sse(ev, named=False) + end, events, ending)


def anthropic_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(_anthropic_event(), min_size=1, max_size=5)
    return st.builds(lambda ev, end: _sse(ev, named=True) + end, events, st.just(b"") | raw_tail)


@dataclass
class Rig:
    """The gateway and the fake upstream on one loop, for the whole module."""

    loop: asyncio.AbstractEventLoop
    gateway_url: str = ""
    body: bytes = b""
    servers: list[TestServer] = field(default_factory=list)

    async def _upstream(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        # In two pieces, so a split anywhere inside an event is exercised too.
        half = len(self.body) // 2
        for piece in (self.body[:half], self.body[half:]):
            if piece:
                await resp.write(piece)
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", self._upstream)
        upstream.router.add_post("/v1/messages", self._upstream)
        up = TestServer(upstream)
        await up.start_server()
        base = str(up.make_url(""))
        settings = settings_from(
            models=[
                {"name": "up", "provider": "openai", "base_url": base + "/v1"},
                {"name": "claude", "provider": "anthropic", "base_url": base},
            ],
            stream={"idle_timeout_s": 2, "ttft_timeout_s": 2, "heartbeat_interval_s": 10},
        )
        gw = TestServer(create_app(settings, metrics=Metrics.create(CollectorRegistry())))
        options = server_options(settings)
        assert options.pop("handler_cancellation") is True  # TestServer sets it
        await gw.start_server(**options)
        self.servers = [gw, up]
        self.gateway_url = str(gw.make_url(""))

    async def ask(self, path: str, model: str) -> tuple[int, bytes]:
        body: dict[str, Any] = {"model": model, "stream": True, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        if path == "/v1/responses":
            body = {"model": model, "stream": True, "input": "hi", "max_output_tokens": 16}
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


def _check_openai_answer(status: int, text: bytes) -> None:
    assert status in (200, 502), (status, text)
    if status == 502:
        assert orjson.loads(text)["error"]["code"].startswith("upstream_")
        return
    events = [e for e in text.split(b"\n\n") if e]
    assert events, text
    last = events[-1]
    if last != b"data: [DONE]":
        assert orjson.loads(last.removeprefix(b"data: "))["error"]["code"].startswith("upstream_")


def _check_anthropic_answer(status: int, text: bytes) -> None:
    assert status in (200, 502, 503, 504, 529), (status, text)
    if status != 200:
        assert orjson.loads(text)["type"] == "error"
        return
    events = [e for e in text.split(b"\n\n") if e]
    assert events, text
    assert events[-1].startswith((b"event: message_stop", b"event: error")), events[-1]


def _check_responses_answer(status: int, text: bytes) -> None:
    assert status in (200, 502), (status, text)
    if status == 502:
        assert orjson.loads(text)["error"]["code"].startswith("upstream_")
        return
    events = [e for e in text.split(b"\n\n") if e]
    assert events, text
    assert events[-1].startswith(
        (b"event: response.completed", b"event: response.incomplete", b"event: response.failed")
    ), events[-1]


HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


BODIES = {"up": openai_bodies(), "claude": anthropic_bodies()}
CHECKS = {
    "/v1/chat/completions": _check_openai_answer,
    "/v1/messages": _check_anthropic_answer,
    "/v1/responses": _check_responses_answer,
}


@pytest.mark.parametrize("path", list(CHECKS))
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
@HYPOTHESIS
@given(data=st.data())
def test_any_upstream_bytes(rig: Rig, model: str, path: str, data: st.DataObject) -> None:
    """Each upstream dialect toward each client dialect (passthrough and translation)."""
    rig.body = data.draw(BODIES[model], label="upstream body")
    status, text = rig.loop.run_until_complete(rig.ask(path, model))
    CHECKS[path](status, text)


def test_the_reported_case_wrong_delta_type(rig: Rig) -> None:
    """The bug as reported: ``"delta": "oops"`` from Anthropic crashed the relay."""
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}
    rig.body = _sse(
        [start, {"type": "content_block_delta", "index": 0, "delta": "oops"}], named=True
    )
    status, text = rig.loop.run_until_complete(rig.ask("/v1/chat/completions", "claude"))
    _check_openai_answer(status, text)
    assert b"upstream_protocol_error" in text
