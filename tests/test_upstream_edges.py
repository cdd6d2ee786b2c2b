"""What an upstream may not make the gateway do (issue 20, rows 1, 2, 3, 7).

- A redirect is never followed: a 3xx is a 502 ``upstream_redirect``, and
  the host it points at gets no request, no prompt and no key.
- A non-streaming body is read up to ``max_response_bytes`` and no further:
  a 502 ``upstream_response_too_large``, and the gateway's memory back after.
- A flood of empty ``data:`` lines reaches the SSE event bound (each line
  costs its bytes on the wire): an ``upstream_protocol_error`` after about 1 MiB read.
- Upstream requests ask for ``Accept-Encoding: identity``, so an upstream
  that compresses whenever allowed sends plain bodies.
- An event sent as several ``data:`` lines is relayed as several ``data:``
  lines (ISSUE 19 row A), parseable by the official SDK.

Real parts throughout: fake upstreams are aiohttp servers on loopback, the
bounds are measured on a gateway process (RSS) and in bytes the fake wrote.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import psutil
import pytest
from aiohttp import web

from gateway.providers.sse_decoder import DEFAULT_MAX_LINE_BYTES, SSEDecoder, SSEEvent
from tests.conftest import LogLines
from tests.fake_anthropic import FakeAnthropic, anthropic_model
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk

WRITTEN = web.AppKey("written", list[int])
"""Bytes of body the upstream's writes handed to its socket, per request."""
ACCEPT = web.AppKey("accept", list[str])
"""Each request's ``Accept-Encoding``."""

CHAT = {"messages": [{"role": "user", "content": "the secret prompt"}], "max_tokens": 16}


class Elsewhere:
    """A server the config never names: it records every request it gets."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._any)
        self.url = ""

    async def _any(self, request: web.Request) -> web.Response:
        self.hits.append((request.method, request.path, dict(request.headers)))
        await request.read()
        return web.json_response({"id": "x", "choices": [], "content": []})


def redirector(status: int, target: str) -> web.Application:
    """An upstream that answers every request with ``status`` to ``target`` + path."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": target + request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_upstream_redirect_is_a_502_and_never_followed(
    gateway: GatewayFactory,
    aiohttp_server: Any,
    log_lines: LogLines,
    provider: str,
    stream: bool,
    status: int,
) -> None:
    elsewhere = Elsewhere()
    elsewhere.url = str((await aiohttp_server(elsewhere.app)).make_url(""))
    redirecting = str((await aiohttp_server(redirector(status, elsewhere.url))).make_url(""))
    client = await gateway(
        models=[
            {"name": "up", "provider": "openai", "base_url": redirecting + "/v1"},
            {"name": "claude", "provider": "anthropic", "base_url": redirecting},
        ]
    )
    path, model = (
        ("/v1/chat/completions", "up") if provider == "openai" else ("/v1/messages", "claude")
    )
    resp = await client.post(path, json={**CHAT, "model": model, "stream": stream})
    text = await resp.text()
    assert resp.status == 502, text
    assert "redirect" in text
    if provider == "openai":
        assert orjson.loads(text)["error"]["code"] == "upstream_redirect"
    assert elsewhere.url not in text  # the Location goes to the log only
    assert elsewhere.hits == []  # no request, prompt or key went there
    details = [str(line.get("detail", "")) for line in log_lines()]
    assert any(elsewhere.url in d for d in details), details


async def _json_forever(request: web.Request, total: int | None, length: int | None = None
                        ) -> web.StreamResponse:  # fmt: skip
    """A JSON object that grows by 64 KiB writes: ``total`` bytes in all
    (None: until the reader goes away); ``length`` declares a Content-Length."""
    await request.read()
    transport = request.transport
    assert transport is not None
    # A small send buffer: what was written is what the gateway read, within 64 KiB.
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    headers = {"Content-Type": "application/json"}
    resp = web.StreamResponse(headers=headers)
    if length is not None:
        resp.content_length = length
    await resp.prepare(request)
    piece = b'"' + b"x" * 65533 + b'",'
    written = request.app[WRITTEN]
    written.append(0)
    await resp.write(b'{"choices":[')
    while total is None or written[-1] < total:
        await resp.write(piece)
        written[-1] += len(piece)
    await resp.write(b'""]}')
    await resp.write_eof()
    return resp


def big_upstream() -> web.Application:
    """``/big/v1``: a 64 MiB JSON body (chunked); ``/forever/v1``: a chunked
    JSON body that never ends; ``/declared/v1``: a 300 MB Content-Length."""
    app = web.Application()
    app[WRITTEN] = []
    app.router.add_post("/big/v1/chat/completions", partial(_json_forever, total=64 << 20))
    app.router.add_post("/forever/v1/chat/completions", partial(_json_forever, total=None))
    app.router.add_post(
        "/declared/v1/chat/completions",
        partial(_json_forever, total=300 << 20, length=300 << 20),
    )
    return app


@pytest.mark.parametrize("route", ["big", "forever", "declared"])
async def test_a_non_streaming_body_past_the_bound_is_a_502(
    gateway: GatewayFactory, aiohttp_server: Any, route: str
) -> None:
    upstream = await aiohttp_server(big_upstream())
    base = str(upstream.make_url(f"/{route}/v1"))
    client = await gateway(
        models=[{"name": "up", "provider": "openai", "base_url": base,
                 "max_response_bytes": 1 << 20}]
    )  # fmt: skip
    resp = await client.post("/v1/chat/completions", json={**CHAT, "model": "up"})
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_response_too_large"
    # Read no further than the bound (plus what the sockets hold).
    assert len(upstream.app[WRITTEN]) == 1
    assert upstream.app[WRITTEN][0] < (1 << 20) + (1 << 20)


async def test_a_non_streaming_body_within_the_bound_is_relayed(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai, max_response_bytes=65536)])
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(model="up", messages=CHAT["messages"])
    assert done.choices[0].message.content == "hi"


def _peak_rss(pid: int) -> int:
    """The process's peak resident set so far (``VmHWM``), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


async def test_gateway_memory_stays_bounded_against_huge_bodies(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """Row 2 as reported (RSS 57 -> 834 MB, and 1.5 GB for an endless body): a
    gateway process facing 64 MiB and endless bodies answers 502 each time,
    its peak RSS stays within 100 MB of its baseline, its RSS is back after,
    and /healthz answers."""
    from tests.gwproc import GatewayProc

    upstream = await aiohttp_server(big_upstream())
    base = str(upstream.make_url(""))
    config = tmp_path / "sluice.toml"
    config.write_text(
        "\n".join(
            f'[[models]]\nname = "{route}"\nprovider = "openai"\n'
            f'base_url = "{base}/{route}/v1"\napi_key_env = ""\n'
            for route in ("big", "forever")
        )
    )
    async with (
        GatewayProc(config, tmp_path, "gw") as gw,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
    ):
        assert gw.proc is not None
        proc = psutil.Process(gw.proc.pid)

        async def ask(model: str) -> tuple[int, str | None]:
            async with session.post(
                f"{gw.url}/v1/chat/completions", json={**CHAT, "model": model}
            ) as resp:
                error = (await resp.json()).get("error")
                return resp.status, error["code"] if isinstance(error, dict) else None

        async with session.get(f"{gw.url}/healthz") as resp:
            assert resp.status == 200
        baseline = proc.memory_info().rss
        statuses = [await ask(m) for m in ("big", "forever", "big", "forever")]
        statuses += await asyncio.gather(*(ask(m) for m in ("big", "forever") * 2))
        peak, after = _peak_rss(proc.pid), proc.memory_info().rss
        async with session.get(f"{gw.url}/healthz") as resp:
            assert resp.status == 200
    print(f"gateway RSS: baseline {baseline >> 20} MiB, peak {peak >> 20}, after {after >> 20}")
    assert statuses == [(502, "upstream_response_too_large")] * 8
    assert peak - baseline < 100 << 20, (baseline >> 20, peak >> 20)
    assert after - baseline < 50 << 20, (baseline >> 20, after >> 20)


async def test_an_empty_data_line_flood_ends_in_a_protocol_error(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """Row 3 as reported: ``data:\\n`` lines added nothing to the event bound
    (and re-summed the pending list per read). Each line now costs its bytes,
    so the stream ends with ``upstream_protocol_error`` after about 1 MiB of them."""
    flood = b"data:\n" * (65536 // 6)
    fake_openai.script = Script(
        events=[sse(chunk("hi"))] + [flood] * 64,  # 4 MiB of empty data lines
        then="hang",
        sndbuf=65536,
    )
    client = await gateway(
        models=[openai_model(fake_openai)], stream={"idle_timeout_s": 5, "heartbeat_interval_s": 30}
    )
    resp = await client.post("/v1/chat/completions", json={**CHAT, "model": "up", "stream": True})
    text = await resp.read()
    assert resp.status == 200
    events = SSEDecoder().feed(text)
    assert orjson.loads(events[0].data)["choices"][0]["delta"]["content"] == "hi"
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"
    record = fake_openai.records[0]
    # The bound is 1 MiB of data lines; the rest is what sockets hold.
    assert DEFAULT_MAX_LINE_BYTES <= record.bytes_out < DEFAULT_MAX_LINE_BYTES + (1 << 20)
    health = await client.get("/healthz")
    assert health.status == 200


def compressing_upstream(always: bool = False) -> web.Application:
    """An OpenAI upstream that answers with a whole body, gzipped or deflated
    whenever the request's ``Accept-Encoding`` allows it (as aiohttp's default
    ``gzip, deflate`` does), or gzipped regardless with ``always``. It records
    each request's ``Accept-Encoding`` in ``app[ACCEPT]``."""

    async def handle(request: web.Request) -> web.Response:
        accepted = request.headers.get("Accept-Encoding", "")
        request.app[ACCEPT].append(accepted)
        codings = {c.split(";")[0].strip().lower() for c in accepted.split(",")}
        if (await request.json()).get("stream"):
            body, ctype = sse(chunk("plain")) + sse("[DONE]"), "text/event-stream"
        else:
            message = {"role": "assistant", "content": "plain"}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            done = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [choice]}  # fmt: skip
            body, ctype = orjson.dumps(done), "application/json"
        headers = {}
        if always or "gzip" in codings:
            body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        elif "deflate" in codings:
            body, headers = zlib.compress(body), {"Content-Encoding": "deflate"}
        return web.Response(body=body, content_type=ctype, headers=headers)

    app = web.Application()
    app[ACCEPT] = []
    app.router.add_post("/v1/chat/completions", handle)
    return app


async def _ask_plain(gateway: GatewayFactory, base: str, stream: bool) -> str | None:
    client = await gateway(models=[{"name": "up", "provider": "openai", "base_url": base}])
    async with sdk(client) as oa:
        if stream:
            chunks = [c async for c in await oa.chat.completions.create(
                model="up", messages=CHAT["messages"], stream=True)]  # fmt: skip
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        done = await oa.chat.completions.create(model="up", messages=CHAT["messages"])
        return done.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_upstream_requests_ask_for_identity(
    gateway: GatewayFactory, aiohttp_server: Any, stream: bool
) -> None:
    """Row 7: aiohttp advertised ``gzip, deflate`` with decompression off, so
    an upstream that honours it got a 502. Now the gateway asks for identity."""
    upstream = await aiohttp_server(compressing_upstream())
    assert await _ask_plain(gateway, str(upstream.make_url("/v1")), stream) == "plain"
    assert upstream.app[ACCEPT] == ["identity"]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_an_unasked_for_compressed_body_is_a_protocol_error(
    gateway: GatewayFactory, aiohttp_server: Any, stream: bool
) -> None:
    """An upstream that compresses anyway: a 502, never relayed as if plain."""
    upstream = await aiohttp_server(compressing_upstream(always=True))
    with pytest.raises(openai.InternalServerError) as caught:
        await _ask_plain(gateway, str(upstream.make_url("/v1")), stream)
    assert caught.value.status_code == 502
    assert "compressed" in caught.value.message


def _multiline(payload: dict[str, Any]) -> bytes:
    """One SSE event whose JSON is sent as several ``data:`` lines (pretty-printed)."""
    lines = orjson.dumps(payload, option=orjson.OPT_INDENT_2).split(b"\n")
    return b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


async def test_multi_line_data_events_reach_the_sdk_parseable(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """ISSUE 19 row A: an event sent as several ``data:`` lines was relayed as
    one ``data:`` line holding line breaks, which the client's SSE parser cut
    into fields. 14 such events reach the OpenAI SDK whole."""
    pieces = [f"w{i} " for i in range(11)]
    events = [chunk(role="assistant", content="")]
    events += [chunk(p) for p in pieces]
    events += [chunk(finish="stop")]
    usage = {"prompt_tokens": 3, "completion_tokens": 11, "total_tokens": 14}
    events += [{**chunk(), "choices": [], "usage": usage}]
    assert len(events) == 14
    fake_openai.script = Script(events=[_multiline(e) for e in events] + [sse("[DONE]")])
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="up",
            messages=CHAT["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
        got = [c async for c in stream]
    assert len(got) == 14
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "".join(pieces)
    assert got[-1].usage is not None and got[-1].usage.completion_tokens == 11


async def test_an_event_type_with_a_line_break_is_not_relayed_as_lines(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    """An unnamed Anthropic event's ``type`` becomes the relayed ``event:``
    line: one holding a line break would inject lines of its own."""
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}
    evil = {"type": 'content_block_delta\ndata: {"injected": true}'}
    fake_anthropic.script = Script(
        events=[b"data: " + orjson.dumps(start) + b"\n\n", b"data: " + orjson.dumps(evil) + b"\n\n"]
    )
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post("/v1/messages", json={**CHAT, "model": "claude", "stream": True})
    text = await resp.read()
    assert b"injected" not in text
    assert text.rstrip().endswith(b"}") and b"event: error" in text


async def test_upstream_cookies_are_neither_kept_nor_sent(
    gateway: GatewayFactory, aiohttp_server: Any
) -> None:
    """The upstream sessions are shared by every client and key: a cookie one
    upstream answer sets was sent with every later request (another key's
    too), and each new cookie grew the jar. No cookie is kept now."""
    cookies: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        await request.read()
        done = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hi"}}]}  # fmt: skip
        resp = web.json_response(done)
        resp.set_cookie(f"session{len(cookies)}", "belongs-to-the-first-caller")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    # By name: aiohttp's jar keeps no cookie from an IP address.
    port = (await aiohttp_server(app)).port
    base = f"http://localhost:{port}/v1"
    client = await gateway(models=[{"name": "up", "provider": "openai", "base_url": base}])
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", json={**CHAT, "model": "up"})
        assert resp.status == 200
    assert cookies == [None, None, None]


def test_a_translated_responses_stream_holds_a_bounded_output() -> None:
    """A Responses stream translated from Chat Completions holds its output
    for the final events; it used to grow for as long as the upstream sent."""
    from gateway.dialects.translate_responses import ITEM_COST, ResponsesFromChat
    from gateway.errors import UpstreamResponseTooLarge
    from gateway.providers.base import UpstreamChunk

    encoder = ResponsesFromChat({"model": "up", "input": "hi"}, max_output_bytes=10_000)
    text = chunk("x" * 100)
    for _ in range(100):  # 10,000: at the bound
        encoder.encode(UpstreamChunk(orjson.dumps(text), text))
    with pytest.raises(UpstreamResponseTooLarge):
        encoder.encode(UpstreamChunk(orjson.dumps(text), text))
    calls = ResponsesFromChat({"model": "up", "input": "hi"}, max_output_bytes=10 * ITEM_COST)
    with pytest.raises(UpstreamResponseTooLarge):  # items count too
        for index in range(11):
            call = {"index": index, "id": f"c{index}", "function": {"name": "f"}}
            payload = chunk(tool_calls=[call])
            calls.encode(UpstreamChunk(orjson.dumps(payload), payload))


async def test_an_endless_responses_stream_fails_past_the_bound(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """End to end, /v1/responses on a Chat Completions upstream that never
    stops: ``response.failed`` once 8 MiB of output is held."""
    fake_openai.script = Script(events=[], then="flood", sndbuf=65536)
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post("/v1/responses", json={"model": "up", "input": "hi", "stream": True})
    assert resp.status == 200
    events = SSEDecoder(64 << 20).feed(await resp.read())  # the output so far is in it
    assert events[-1].event == "response.failed"
    failed = orjson.loads(events[-1].data)["response"]["error"]
    assert "larger than the gateway accepts" in failed["message"], failed
    assert fake_openai.records[0].bytes_out < 16 << 20


@pytest.mark.parametrize("kind", ["openai", "anthropic", "responses"])
def test_every_passthrough_relays_multi_line_data_as_lines(kind: str) -> None:
    """ISSUE 19 row A, each encoder that relays ``data`` as received: what
    the client's SSE parser reads back is the data the upstream sent."""
    from gateway.dialects.anthropic import AnthropicPassthrough
    from gateway.dialects.openai import OpenAIPassthrough
    from gateway.dialects.translate_responses import ResponsesPassthrough
    from gateway.providers.base import UpstreamChunk

    payloads = {
        "openai": (chunk("a\nb"), None, OpenAIPassthrough(True)),
        "anthropic": (
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}},
            "content_block_delta",
            AnthropicPassthrough(),
        ),
        "responses": (
            {"type": "response.output_text.delta", "delta": "a", "sequence_number": 1},
            "response.output_text.delta",
            ResponsesPassthrough(),
        ),
    }
    payload, name, encoder = payloads[kind]
    data = orjson.dumps(payload, option=orjson.OPT_INDENT_2)  # as several data: lines sent it
    assert data.count(b"\n") > 3
    frame = encoder.encode(UpstreamChunk(data, payload, name))
    assert SSEDecoder().feed(frame.data) == [SSEEvent(data, name)]
