"""A client that leaves closes the upstream at once, mid-stream or before the first token."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from gateway.providers.openai import OpenAIStream
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.rawclient import RawSSEClient

BODY: dict[str, Any] = {
    "model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}],
}  # fmt: skip


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _wait_closed(fake: FakeOpenAI) -> float:
    async with asyncio.timeout(5.0):
        while fake.records[0].closed_at is None:
            await asyncio.sleep(0.005)
    closed_at = fake.records[0].closed_at
    assert closed_at is not None
    return closed_at


async def _open(client: Any) -> RawSSEClient:
    return await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions", BODY
    )


async def test_disconnect_mid_stream_closes_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i}")) for i in range(1000)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai)])
    raw = await _open(client)
    assert len(await raw.events(limit=3)) == 3
    raw.close()
    await _wait_closed(fake_openai)
    assert not fake_openai.records[0].completed
    assert fake_openai.records[0].events_out < 1000
    await asyncio.sleep(0.05)  # the handler's finally runs after the upstream closed
    reg = metrics.registry
    assert sample(reg, "sluice_stream_terminations_total",
                  model="up", provider="openai", reason="client_disconnected") == 1  # fmt: skip
    assert sample(reg, "sluice_upstream_cancel_seconds_count", provider="openai") == 1
    assert sample(reg, "sluice_streams_active", route="/v1/chat/completions") == 0


async def test_disconnect_before_first_token_closes_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(events=[sse(chunk("late"))], ttft_s=30.0)
    client = await gateway(models=[openai_model(fake_openai)])
    _, writer = await asyncio.open_connection(client.server.host, client.server.port)
    payload = b'{"model":"up","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    async with asyncio.timeout(5):
        while not fake_openai.records:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)  # the gateway now waits for the first token
    writer.close()
    await _wait_closed(fake_openai)
    await asyncio.sleep(0.05)
    assert sample(metrics.registry, "sluice_stream_terminations_total",
                  model="up", provider="openai", reason="client_disconnected") == 1  # fmt: skip


def _tcp_state(fd: int) -> int:
    """``tcpi_state`` of a TCP socket (Linux ``TCP_INFO``'s first byte; 1: established)."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")
async def test_closing_an_upstream_sends_its_fin_before_close_returns(
    fake_openai: FakeOpenAI,
) -> None:
    """The transport closes its socket a loop iteration later (under load: the
    loop's lag); ``close()`` shuts the socket down at once, so the upstream
    stops generating without waiting for the loop."""
    fake_openai.script = Script(events=[sse(chunk(f"t{i}")) for i in range(1000)], itl_s=0.01)
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{fake_openai.base_url}/chat/completions", json=BODY)
        stream = OpenAIStream(response)
        assert await stream.next() is not None
        connection = response.connection
        assert connection is not None and connection.transport is not None
        fd = os.dup(connection.transport.get_extra_info("socket").fileno())
        try:
            assert _tcp_state(fd) == 1  # established
            stream.close()  # no await after it: the loop has not run since
            assert _tcp_state(fd) != 1  # FIN sent (FIN_WAIT1/2, or closed)
        finally:
            os.close(fd)
    await _wait_closed(fake_openai)
