"""The baseline relay forwards a stream byte for byte (it is only unbounded)."""

from __future__ import annotations

from typing import Any

from loadtest.mock.upstream import MockConfig, create_mock_app
from loadtest.relays.baseline import create_baseline_app
from tests.loadtest.conftest import FAST, parse_sse


async def test_baseline_relays_stream(aiohttp_server: Any, aiohttp_client: Any) -> None:
    upstream = await aiohttp_server(create_mock_app(MockConfig(scenario=FAST)))
    client = await aiohttp_client(create_baseline_app(str(upstream.make_url(""))))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    events = parse_sse(await resp.text())
    assert events[-1] == (None, "[DONE]")
    assert sum(1 for _, d in events if '"content":"t' in d) == FAST.tokens
