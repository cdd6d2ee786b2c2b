"""A client that leaves /v1/messages closes the upstream at once (same relay,
same pattern as tests/test_disconnect.py), for both an Anthropic upstream
(passthrough) and an OpenAI-dialect one (translation)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.metrics import Metrics
from tests.fake_anthropic import FakeAnthropic, anthropic_model, delta, message_start, text_block
from tests.fake_anthropic import aevent as anthropic_event
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.rawclient import RawSSEClient


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _wait_closed(fake: FakeOpenAI) -> None:
    async with asyncio.timeout(5.0):
        while fake.records[0].closed_at is None:
            await asyncio.sleep(0.005)


async def _open(client: Any, model: str) -> RawSSEClient:
    body = {"model": model, "max_tokens": 4096, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    return await RawSSEClient.open(client.server.host, client.server.port, "/v1/messages", body)


async def test_disconnect_mid_stream_closes_anthropic_upstream(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic, metrics: Metrics
) -> None:
    events = [message_start(), text_block(0), *(delta(0, text=f"t{i} ") for i in range(1000))]
    fake_anthropic.script = Script(events=[anthropic_event(e) for e in events], itl_s=0.01)
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    raw = await _open(client, "claude")
    assert len(await raw.events(limit=3)) == 3
    raw.close()
    await _wait_closed(fake_anthropic)
    assert not fake_anthropic.records[0].completed
    assert fake_anthropic.records[0].events_out < len(events)
    await asyncio.sleep(0.05)  # the handler's finally runs after the upstream closed
    labels = {"model": "claude", "provider": "anthropic", "reason": "client_disconnected"}
    assert sample(metrics, "sluice_stream_terminations_total", **labels) == 1
    assert sample(metrics, "sluice_upstream_cancel_seconds_count", provider="anthropic") == 1
    assert sample(metrics, "sluice_streams_active", route="/v1/messages") == 0


async def test_disconnect_mid_translated_stream_closes_openai_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i}")) for i in range(1000)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai)])
    raw = await _open(client, "up")
    assert len(await raw.events(limit=3)) == 3
    raw.close()
    await _wait_closed(fake_openai)
    assert fake_openai.records[0].events_out < 1000
    await asyncio.sleep(0.05)
    assert sample(metrics, "sluice_stream_terminations_total",
                  model="up", provider="openai", reason="client_disconnected") == 1  # fmt: skip
