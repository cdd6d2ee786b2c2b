"""Admission control: over max_streams -> 429 + Retry-After; capacity comes back."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.metrics import Metrics
from tests.helpers import GatewayFactory

SLOW = {"name": "slow", "provider": "sim", "ttft_ms": 50, "itl_ms": 20, "output_tokens": 15}
BODY: dict[str, Any] = {
    "model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}],
}  # fmt: skip


async def test_over_max_streams_is_429_until_streams_end(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    client = await gateway(models=[SLOW], server={"max_streams": 2})
    first = await client.post("/v1/chat/completions", json=BODY)
    second = await client.post("/v1/chat/completions", json=BODY)
    assert (first.status, second.status) == (200, 200)
    over = await client.post("/v1/chat/completions", json=BODY)
    assert over.status == 429
    assert over.headers["Retry-After"] == "1"
    assert (await over.json())["error"]["code"] == "at_capacity"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["status"] == "saturated"
    assert "data: [DONE]" in await first.text()
    assert "data: [DONE]" in await second.text()
    await asyncio.sleep(0.05)
    assert (await client.get("/readyz")).status == 200
    again = await client.post("/v1/chat/completions", json=BODY)
    assert again.status == 200
    await again.read()
    rejected = metrics.registry.get_sample_value(
        "sluice_admission_rejections_total", {"reason": "max_streams"}
    )
    assert rejected == 1


async def test_non_streaming_requests_count_against_capacity(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SLOW], server={"max_streams": 1})
    first = await client.post("/v1/chat/completions", json=BODY)
    assert first.status == 200
    over = await client.post("/v1/chat/completions", json={**BODY, "stream": False})
    assert over.status == 429
    await first.read()
