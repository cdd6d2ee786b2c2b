"""Client profiles are bounded in time: a slow reader on a server that goes
silent gives up after its time limit (seconds), not after a byte count."""

from __future__ import annotations

import asyncio
import random

import pytest

from loadtest.client import profiles
from loadtest.client.profiles import Profile, Target, run_client
from loadtest.mock.scenario import MockScenario

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_slow_client_on_silent_server_stops_at_its_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HEAD)  # the response head, then nothing more
            await writer.drain()
            await reader.read()  # until the client leaves
        finally:
            writer.close()
            await writer.wait_closed()
            served.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # The limit is (stop_at - now) + the stream's expected duration (0 here) + grace.
    monkeypatch.setattr(profiles, "_GRACE_S", 0.3)
    slow = Profile("slow", "slow", read_bytes_per_s=1e6, read_chunk=512)
    sc = MockScenario(ttft_ms=0, itl_ms=0, tokens=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with server, asyncio.timeout(5):
        res = await run_client(
            Target("t", "127.0.0.1", port, "m"), slow, sc, "c1", random.Random(0), t0
        )
        await served.wait()  # the server side is closed too, before the loop ends
    assert res.status == 200
    assert res.error == "TimeoutError"
    assert loop.time() - t0 < 2.0
