"""A client that leaves closes the upstream at once, mid-stream or before the first token."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
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
