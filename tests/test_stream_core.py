"""The stream core's own promises: connections reused upstream, per-stream
socket tuning undone downstream, interrupts told apart from cancellations."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.interrupts import Interrupt, Interrupter
from gateway.sse import SSEResponse
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

BODY = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def test_completed_streams_reuse_the_upstream_connection(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", json=BODY)
        assert (await resp.text()).endswith("data: [DONE]\n\n")
        await asyncio.sleep(0.05)  # the chunked terminator releases the connection
    peers = {r.peer for r in fake_openai.records}
    assert len(fake_openai.records) == 3
    assert len(peers) == 1, peers


async def test_a_stream_cut_short_does_not_return_its_connection(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    # The upstream goes silent mid-body: its connection is closed, not reused.
    fake_openai.queue = [Script(events=[sse(chunk("a"))], then="hang")]
    client = await gateway(models=[openai_model(fake_openai)], stream={"idle_timeout_s": 0.2})
    for _ in range(2):
        await (await client.post("/v1/chat/completions", json=BODY)).read()
        await asyncio.sleep(0.05)
    assert len({r.peer for r in fake_openai.records}) == 2


async def test_socket_tuning_does_not_leak_to_the_next_request(aiohttp_client: Any) -> None:
    """One keep-alive connection: a stream with a small bound, then a plain
    request that reads the connection's settings."""

    async def stream(request: web.Request) -> web.StreamResponse:
        sse_response = SSEResponse(request, buffer_bytes=8192, send_timeout_s=5)
        seen["untouched"] = _settings(request)  # tuned at commit, not before
        await sse_response.prepare()
        tuned = _settings(request)
        await sse_response.send(b"data: x\n\n")
        await sse_response.finish()
        seen["tuned"] = tuned
        return sse_response.response

    async def inspect(request: web.Request) -> web.Response:
        return web.json_response(_settings(request))

    seen: dict[str, dict[str, int]] = {}
    app = web.Application()
    app.router.add_get("/before", inspect)
    app.router.add_get("/stream", stream)
    app.router.add_get("/after", inspect)
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    before = await (await client.get("/before")).json()
    assert (await (await client.get("/stream")).text()) == "data: x\n\n"
    after = await (await client.get("/after")).json()
    assert seen["untouched"] == before  # nothing tuned before the commit
    assert seen["tuned"] != before  # the stream did tune its connection
    assert after == before
    assert after["port"] == before["port"]  # the same keep-alive connection


def _settings(request: web.Request) -> dict[str, int]:
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    return {
        "sndbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "high": transport.get_write_buffer_limits()[1],
        "port": transport.get_extra_info("peername")[1],
    }


async def test_interrupts_are_told_apart_from_other_cancellations() -> None:
    started = asyncio.Event()

    async def waiter(result: list[Interrupt | None], both: bool) -> None:
        interrupter = Interrupter(asyncio.current_task())  # type: ignore[arg-type]
        holder.append(interrupter)
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            result.append(interrupter.take())
            if result[-1] is None:
                raise

    for both, expected in ((False, Interrupt.IDLE), (True, None)):
        started.clear()
        holder: list[Interrupter] = []
        result: list[Interrupt | None] = []
        task = asyncio.create_task(waiter(result, both))
        await started.wait()
        holder[0].interrupt(Interrupt.IDLE)
        holder[0].interrupt(Interrupt.DEADLINE)  # the first pending one wins
        if both:
            task.cancel()  # e.g. aiohttp: the client went away
        await asyncio.wait([task])
        assert result == [expected]
        assert task.cancelled() is both
