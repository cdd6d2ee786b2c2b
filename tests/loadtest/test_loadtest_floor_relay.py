"""The floor relay: relays a stream event by event, waits for a stalled client
(so it stops pulling upstream), and closes the upstream when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from loadtest.client.sse import build_request, make_socket
from loadtest.mock.scenario import MockScenario
from loadtest.mock.upstream import STATE, MockConfig, StreamRecord, create_mock_app
from loadtest.relays.floor import create_floor_app
from tests.loadtest.conftest import FAST, parse_sse

FLOOD = MockScenario(ttft_ms=0, itl_ms=0, tokens=1_000_000, token_bytes=1024)


async def test_floor_relays_stream(aiohttp_server: Any, aiohttp_client: Any) -> None:
    upstream = await aiohttp_server(create_mock_app(MockConfig(scenario=FAST)))
    client = await aiohttp_client(create_floor_app(str(upstream.make_url(""))))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    events = parse_sse(await resp.text())
    assert events[-1] == (None, "[DONE]")
    assert sum(1 for _, d in events if '"content":"t' in d) == FAST.tokens


async def _frames_when_stable(rec: StreamRecord, within_s: float = 8.0) -> int:
    """Poll the mock's frame count until it stops moving for 0.5 s."""
    async with asyncio.timeout(within_s):
        last = -1
        while rec.frames_written != last or last <= 0:
            last = rec.frames_written
            await asyncio.sleep(0.5)
    return last


async def test_stalled_client_stops_upstream_and_disconnect_closes_it(
    aiohttp_server: Any,
) -> None:
    upstream = await aiohttp_server(create_mock_app(MockConfig(scenario=FLOOD)))
    floor = await aiohttp_server(create_floor_app(str(upstream.make_url(""))))
    loop = asyncio.get_running_loop()
    sock = make_socket("127.0.0.1", 4096)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", floor.port))
        req = build_request("openai", "127.0.0.1", floor.port, "m", "hi", FLOOD.tokens)
        await loop.sock_sendall(sock, req)  # then never read: a stalled client
        async with asyncio.timeout(5):
            while not upstream.app[STATE].records:
                await asyncio.sleep(0.05)
        rec = next(iter(upstream.app[STATE].records.values()))
        stalled_at = await _frames_when_stable(rec)
        # The relay's drain waits, so it stopped reading: the mock is itself blocked in
        # a drain, with only the buffers between them filled (megabytes, not the stream).
        assert stalled_at < FLOOD.tokens // 20
        assert rec.bytes_drained < rec.bytes_written
        assert rec.peer_closed_mono is None
    finally:
        sock.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while rec.peer_closed_mono is None:
                await asyncio.sleep(0.02)
    assert rec.outcome == "peer_closed"
    assert rec.frames_written < FLOOD.tokens


async def test_disconnect_while_waiting_for_upstream_closes_it(aiohttp_server: Any) -> None:
    """Handler cancellation: the client leaves during a long first-token wait."""
    slow_first = MockScenario(ttft_ms=30_000, itl_ms=10, tokens=5)
    upstream = await aiohttp_server(create_mock_app(MockConfig(scenario=slow_first)))
    floor = await aiohttp_server(create_floor_app(str(upstream.make_url(""))))
    _reader, writer = await asyncio.open_connection("127.0.0.1", floor.port)
    writer.write(build_request("openai", "127.0.0.1", floor.port, "m", "hi", 5))
    await writer.drain()
    records = upstream.app[STATE].records
    async with asyncio.timeout(5):
        while not records:
            await asyncio.sleep(0.02)
    rec = next(iter(records.values()))
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while rec.peer_closed_mono is None:
                await asyncio.sleep(0.02)
    assert rec.outcome == "peer_closed"
    assert rec.first_token_mono is None  # it left before the first token
