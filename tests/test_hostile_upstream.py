"""Hostile upstream bytes: every value from an upstream is untrusted input.

Hypothesis drives each test itself (so a failure shrinks to the smallest
upstream body that breaks the gateway). The gateway and a fake upstream that
answers with the generated body run on real sockets, on one event loop kept
for the whole module. Whatever the upstream sends, the client gets a
well-formed answer in its dialect: a complete stream, a 502 before the first
event, or an error event after it; never a 500, never a hang. The same
holds for non-streaming bodies (any bytes, any size past
``max_response_bytes``), redirects (a 502, and the host they point at gets
nothing), content encodings (the gateway asks for identity and refuses
anything else) and floods of empty lines; events sent as several ``data:``
lines reach the client as several ``data:`` lines.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
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
from gateway.providers.sse_decoder import SSEDecoder
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


def _sse(events: list[Any], named: bool, lines: bool = False) -> bytes:
    """Events as SSE; with ``lines``, each event's JSON pretty-printed over
    several ``data:`` lines (joined back with ``\\n`` by any SSE parser)."""
    out = b""
    for event in events:
        if named and isinstance(event, dict):
            out += b"event: " + str(event.get("type")).encode() + b"\n"
        if lines:
            text = orjson.dumps(event, option=orjson.OPT_INDENT_2)
            out += b"".join(b"data: " + line + b"\n" for line in text.split(b"\n")) + b"\n"
        else:
            out += b"data: " + orjson.dumps(event) + b"\n\n"
    return out


raw_tail = st.binary(max_size=64) | st.sampled_from(
    [b"data: {\n\n", b"data: [1]\n\n", b"data: \xff\xfe\n\n"]
)


flood = st.builds(
    lambda line, n: line * n,
    st.sampled_from([b"data:\n", b"data: \n", b"data\n", b"\n", b":\n", b"event: x\n", b"id\n"]),
    st.integers(1, 3000),
)
"""A flood of empty lines of one kind (linear work, bounded data)."""


def openai_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(_openai_chunk(), min_size=1, max_size=4)
    ending = st.sampled_from([b"data: [DONE]\n\n", b""]) | raw_tail
    return st.builds(
        lambda ev, lines, fl, end: _sse(ev, named=False, lines=lines) + fl + end,
        events, st.booleans(), st.just(b"") | flood, ending,
    )  # fmt: skip


def anthropic_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(_anthropic_event(), min_size=1, max_size=5)
    return st.builds(
        lambda ev, lines, fl, end: _sse(ev, named=True, lines=lines) + fl + end,
        events, st.booleans(), st.just(b"") | flood, st.just(b"") | raw_tail,
    )  # fmt: skip


MAX_RESPONSE_BYTES = 65536
"""The rig's ``max_response_bytes``, small enough for generated bodies to pass it."""


def _completion() -> st.SearchStrategy[Any]:
    message = st.fixed_dictionaries(
        {"role": st.just("assistant") | json_values},
        optional={"content": json_values, "tool_calls": json_values, "refusal": json_values},
    )
    choice = st.fixed_dictionaries(
        {"index": st.just(0) | json_values, "message": message | json_values},
        optional={"finish_reason": json_values},
    )
    return st.fixed_dictionaries(
        {"id": st.just("c1"), "object": st.just("chat.completion")},
        optional={"choices": st.lists(choice, max_size=2) | json_values, "usage": json_values},
    )


def _message() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"type": st.just("message"), "role": st.just("assistant")},
        optional={
            "id": json_values,
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": json_values}), max_size=2
            ) | json_values,
            "stop_reason": json_values,
            "usage": json_values,
        },
    )  # fmt: skip


class Padded(bytes):
    """A body padded to about ``max_response_bytes``, shown short in reports."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"Padded({len(self)} bytes: {bytes(self[:80])!r}...)")


def whole_bodies() -> st.SearchStrategy[bytes]:
    """Non-streaming bodies: either dialect's object (the wrong one too), any
    JSON, raw bytes, or an object padded past ``max_response_bytes``."""
    objects = (_completion() | _message() | json_values).map(orjson.dumps)
    padded = st.builds(
        lambda obj, extra: Padded(obj[:-1] + b',"pad":"' + b"x" * extra + b'"}'),
        (_completion() | _message()).map(orjson.dumps),
        st.integers(MAX_RESPONSE_BYTES - 64, MAX_RESPONSE_BYTES + 64),
    )
    return objects | padded | st.binary(max_size=64)


@dataclass
class Rig:
    """The gateway and the fake upstream on one loop, for the whole module.

    The upstream answers every request with :attr:`body` (in two writes),
    :attr:`status` and :attr:`headers`; a 3xx points ``Location`` at
    :attr:`elsewhere_url` (+ :attr:`location`), a server the config never
    names, which counts what reaches it in :attr:`elsewhere_hits`. Each
    request's ``Accept-Encoding`` is kept in :attr:`accept`.
    """

    loop: asyncio.AbstractEventLoop
    gateway_url: str = ""
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    location: str = ""
    elsewhere_url: str = ""
    elsewhere_hits: int = 0
    accept: list[str] = field(default_factory=list, repr=False)
    servers: list[TestServer] = field(default_factory=list, repr=False)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.elsewhere_hits += 1
        return web.json_response({"id": "elsewhere", "choices": [], "content": []})

    async def _upstream(self, request: web.Request) -> web.StreamResponse:
        streaming = orjson.loads(await request.read()).get("stream")
        self.accept.append(request.headers.get("Accept-Encoding", ""))
        if 300 <= self.status < 400:
            location = self.location or self.elsewhere_url + request.path
            return web.Response(status=self.status, headers={"Location": location})
        ctype = "text/event-stream" if streaming else "application/json"
        resp = web.StreamResponse(
            status=self.status, headers={"Content-Type": ctype, **self.headers}
        )
        await resp.prepare(request)
        # In two pieces, so a split anywhere inside an event is exercised too.
        half = len(self.body) // 2
        for piece in (self.body[:half], self.body[half:]):
            if piece:
                await resp.write(piece)
        await resp.write_eof()
        return resp

    def reset(self, body: bytes = b"", status: int = 200, **headers: str) -> None:
        self.body, self.status, self.headers, self.location = body, status, headers, ""

    async def start(self) -> None:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", self._upstream)
        upstream.router.add_post("/v1/messages", self._upstream)
        up = TestServer(upstream)
        await up.start_server()
        elsewhere = web.Application()
        elsewhere.router.add_route("*", "/{tail:.*}", self._elsewhere)
        there = TestServer(elsewhere)
        await there.start_server()
        self.elsewhere_url = str(there.make_url(""))
        base = str(up.make_url(""))
        limit = {"max_response_bytes": MAX_RESPONSE_BYTES}
        settings = settings_from(
            models=[
                {"name": "up", "provider": "openai", "base_url": base + "/v1", **limit},
                {"name": "claude", "provider": "anthropic", "base_url": base, **limit},
            ],
            stream={"idle_timeout_s": 2, "ttft_timeout_s": 2, "heartbeat_interval_s": 10},
        )
        gw = TestServer(create_app(settings, metrics=Metrics.create(CollectorRegistry())))
        options = server_options(settings)
        assert options.pop("handler_cancellation") is True  # TestServer sets it
        await gw.start_server(**options)
        self.servers = [gw, up, there]
        self.gateway_url = str(gw.make_url(""))

    async def ask(self, path: str, model: str, stream: bool = True) -> tuple[int, bytes]:
        body: dict[str, Any] = {"model": model, "stream": stream, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        if path == "/v1/responses":
            body = {"model": model, "stream": stream, "input": "hi", "max_output_tokens": 16}
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


def _events(text: bytes) -> list[Any]:
    """The client's events, parsed as a browser would (WHATWG rules); every
    event's data is JSON (or ``[DONE]``): an event relayed with line breaks
    inside one ``data:`` line, or an injected line, fails here."""
    events = SSEDecoder().feed(text)
    assert events, text
    for event in events:
        if event.data != b"[DONE]":
            assert isinstance(orjson.loads(event.data), dict), event
    return events


def _check_openai_answer(status: int, text: bytes) -> None:
    assert status in (200, 502), (status, text)
    if status == 502:
        assert orjson.loads(text)["error"]["code"].startswith("upstream_")
        return
    last = _events(text)[-1]
    if last.data != b"[DONE]":
        assert orjson.loads(last.data)["error"]["code"].startswith("upstream_")


def _check_anthropic_answer(status: int, text: bytes) -> None:
    assert status in (200, 502, 503, 504, 529), (status, text)
    if status != 200:
        assert orjson.loads(text)["type"] == "error"
        return
    assert _events(text)[-1].event in ("message_stop", "error"), text[-300:]


def _check_responses_answer(status: int, text: bytes) -> None:
    assert status in (200, 502), (status, text)
    if status == 502:
        assert orjson.loads(text)["error"]["code"].startswith("upstream_")
        return
    assert _events(text)[-1].event in (
        "response.completed",
        "response.incomplete",
        "response.failed",
    ), text[-300:]


def _error_code(path: str, status: int, text: bytes) -> str:
    """The error's code (OpenAI dialect) or type (Anthropic) of a non-200 answer."""
    body = orjson.loads(text)
    if path == "/v1/messages":
        assert body["type"] == "error", body
        return str(body["error"]["type"])
    return str(body["error"]["code"])


def _check_whole_answer(path: str, status: int, text: bytes, model: str) -> None:
    """A non-streaming answer: a JSON object (relayed as is toward the same
    dialect, the dialect's object when translated), or the error object."""
    body = orjson.loads(text)
    assert isinstance(body, dict), text
    if status == 200:
        if WHOLE[path] == model:
            return
        if path == "/v1/messages":
            assert body["type"] == "message", body
        elif path == "/v1/responses":
            assert body["object"] == "response", body
        else:
            assert body["object"] == "chat.completion", body
        return
    assert status in (502, 503, 504, 529), (status, text)
    code = _error_code(path, status, text)
    assert code.startswith("upstream_") or code in ("api_error", "overloaded_error"), code


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


WHOLE = {"/v1/chat/completions": "up", "/v1/messages": "claude", "/v1/responses": None}
"""Non-streaming requests, and the model whose answer each relays as is
(toward the others it is translated)."""
FEW = settings(HYPOTHESIS, max_examples=25)


@pytest.mark.parametrize("path", list(WHOLE))
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
@HYPOTHESIS
@given(body=whole_bodies())
def test_any_non_streaming_body(rig: Rig, model: str, path: str, body: bytes) -> None:
    """Any bytes as a non-streaming answer, up to past ``max_response_bytes``."""
    rig.reset(body)
    status, text = rig.loop.run_until_complete(rig.ask(path, model, stream=False))
    _check_whole_answer(path, status, text, model)
    if len(body) > MAX_RESPONSE_BYTES:
        assert status == 502
        assert b"larger than the gateway accepts" in text


LOCATIONS = st.sampled_from(["", "/v1/messages", "//127.0.0.1:1/v1", "http://[::1]:1/"])
"""``""``: the host the config never names; then a path on the same host, a
scheme-relative and an absolute address."""


@pytest.mark.parametrize("path", list(CHECKS))
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
@FEW
@given(
    status=st.sampled_from([301, 302, 303, 307, 308]),
    location=LOCATIONS,
    stream=st.booleans(),
)
def test_redirects_are_never_followed(
    rig: Rig, model: str, path: str, status: int, location: str, stream: bool
) -> None:
    rig.reset(status=status)
    rig.location = location
    hits, asked = rig.elsewhere_hits, len(rig.accept)
    got, text = rig.loop.run_until_complete(rig.ask(path, model, stream=stream))
    assert got == 502, text
    assert b"redirect" in text
    assert rig.elsewhere_hits == hits  # nothing reached the other host
    assert len(rig.accept) == asked + 1  # nor the same host again


def _encoded(body: bytes, coding: str) -> bytes:
    name = coding.strip().lower()
    if name in ("gzip", "x-gzip"):
        return gzip.compress(body)
    if name == "deflate":
        return zlib.compress(body)
    return body


@pytest.mark.parametrize("path", list(CHECKS))
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
@FEW
@given(
    data=st.data(),
    coding=st.sampled_from(["gzip", "deflate", "br", "x-gzip", "GZIP", "identity", " identity"]),
)
def test_content_encodings(rig: Rig, model: str, path: str, data: st.DataObject,
                           coding: str) -> None:  # fmt: skip
    """The gateway asks for identity; a body in any other coding is a 502,
    never relayed as if it were plain (streaming or not)."""
    stream = data.draw(st.booleans(), label="stream")
    plain = data.draw(BODIES[model] if stream else whole_bodies(), label="body")
    rig.reset(_encoded(plain, coding), **{"Content-Encoding": coding})
    status, text = rig.loop.run_until_complete(rig.ask(path, model, stream=stream))
    assert rig.accept[-1] == "identity"
    if coding.strip().lower() != "identity":
        assert status == 502, (status, text)
        assert b"compressed" in text
    elif stream:
        CHECKS[path](status, text)
    elif path in WHOLE:
        _check_whole_answer(path, status, text, model)


@pytest.mark.parametrize("line", [b"data:\n", b"data\n"])
@pytest.mark.parametrize("path", list(CHECKS))
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
def test_an_empty_data_line_flood_hits_the_event_bound(
    rig: Rig, model: str, path: str, line: bytes
) -> None:
    """Past 1 MiB of empty ``data`` lines in one event: a protocol error
    (they used to count 0 bytes, and the bound re-summed them per read)."""
    first = (
        _sse([{"id": "c1", "object": "chat.completion.chunk", "choices": []}], named=False)
        if model == "up"
        else _sse([{"type": "message_start", "message": {"id": "m", "usage": {}}}], named=True)
    )
    rig.reset(first + line * ((1 << 20) // len(line) + 1))
    status, text = rig.loop.run_until_complete(rig.ask(path, model))
    CHECKS[path](status, text)
    assert b"larger than the gateway accepts" in text


DEEP = b"[" * 300 + b"]" * 300
"""Deeper than orjson writes (255 levels), within what it reads (1024)."""


@pytest.mark.parametrize("path", list(WHOLE))
@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":[1]}]}',
        b'{"object":"chat.completion","choices":[{"message":{"tool_calls":"ab"}}],"usage":[]}',
        b'{"object":"chat.completion","choices":[{"message":{"tool_calls":[1]}}]}',
        b'{"object":"chat.completion","choices":{"0":1},"usage":{"prompt_tokens":"a"}}',
        b'{"type":"message","content":5,"usage":"x"}',
        b'{"object":"chat.completion","choices":[],"extra":' + DEEP + b"}",
    ],
    ids=["message", "tool_calls", "tool_call", "choices", "content", "deep"],
)
@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
def test_ill_typed_non_streaming_bodies(rig: Rig, model: str, path: str, body: bytes) -> None:
    """Cases the fuzz found (a 500 each): values of the wrong type in a
    translated completion, and a value nested deeper than orjson writes."""
    rig.reset(body)
    status, text = rig.loop.run_until_complete(rig.ask(path, model, stream=False))
    _check_whole_answer(path, status, text, model)


@pytest.mark.parametrize("model", list(BODIES), ids=["openai-upstream", "anthropic-upstream"])
@FEW
@given(
    status=st.sampled_from([429, 503, 529]),
    retry_after=st.sampled_from(
        ["inf", "1e400", "-inf", "nan", "9" * 30, "Fri, 31 Dec 9999 23:59:59 GMT"]
    )
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
    stream=st.booleans(),
)
def test_any_retry_after(rig: Rig, model: str, status: int, retry_after: str, stream: bool) -> None:
    """An upstream's ``Retry-After`` is relayed as whole seconds within a
    day, or not at all (``inf`` was a 500)."""
    rig.reset(b"{}", status, **{"Retry-After": retry_after})
    path = "/v1/chat/completions" if model == "up" else "/v1/messages"

    async def ask() -> tuple[int, str | None]:
        body = {"model": model, "stream": stream, "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as session,
            session.post(rig.gateway_url + path, json=body) as resp,
        ):
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")

    got, header = rig.loop.run_until_complete(ask())
    assert got == {429: 429, 503: 503, 529: 503}[status] or (model, got) == ("claude", 529)
    if header is not None:
        assert 0 <= int(header) <= 86400
