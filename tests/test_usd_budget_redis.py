"""A key's USD budget across replicas: two gateway processes on one real
Redis (Debian's redis-server) share the key's period spend, in integer
micro-dollars, and both refuse it once the spend passes the budget."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from gateway.quota.store import Windows
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.gwproc import GatewayProc, replicas_config
from tests.keyhelp import MSGS, make_key
from tests.redis_server import RedisServer

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
COST_MICRO = 10 * 100 + 5 * 1000
"""One request at 100 / 1,000 USD per million input / output tokens."""


async def _chat(session: aiohttp.ClientSession, url: str, secret: str) -> tuple[int, Any]:
    async with session.post(
        f"{url}/v1/chat/completions",
        json={"model": "up", "messages": MSGS, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    ) as resp:
        if resp.status != 200:
            return resp.status, await resp.json()
        await resp.read()
        return resp.status, None


async def _period(session: aiohttp.ClientSession, url: str, secret: str) -> Any:
    async with session.get(
        f"{url}/v1/sluice/key", headers={"Authorization": f"Bearer {secret}"}
    ) as resp:
        assert resp.status == 200
        return (await resp.json())["usage"]["period"]


async def test_two_gateways_share_one_usd_budget(
    tmp_path: Path, redis_server: RedisServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk("hi")), sse({**chunk(), "choices": [], "usage": USAGE}), sse("[DONE]")]
    )
    secret, key = make_key("team-a", usd_budget=0.02)  # 20,000 micro-dollars: 4 requests pass
    extra = f"""[models.price]
input = 100
output = 1000
[[auth.keys]]
name = "{key["name"]}"
sha256 = "{key["sha256"]}"
usd_budget = {key["usd_budget"]}
"""
    config = replicas_config(
        tmp_path / "sluice.toml", redis_server.url, fake_openai.base_url, extra
    )
    a, b = GatewayProc(config, tmp_path, "a"), GatewayProc(config, tmp_path, "b")
    try:
        await asyncio.gather(a.start(), b.start())  # on two cores, together
        async with aiohttp.ClientSession() as session:
            await _refused_on_both(session, a, b, secret)
    finally:
        await asyncio.gather(a.stop(), b.stop())
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        period = Windows.at(time.time(), "day").period
        assert await client.get(f"sluice:q:{{team-a}}:u:{period}") == str(4 * COST_MICRO).encode()
    finally:
        await client.aclose()


async def _refused_on_both(
    session: aiohttp.ClientSession, a: GatewayProc, b: GatewayProc, secret: str
) -> None:
    """Requests alternate between the replicas until one is refused."""
    statuses = []
    for gw in (a, b) * 3:
        status, body = await _chat(session, gw.url, secret)
        statuses.append(status)
        if status != 200:
            break
    # 6,000 a request: after four (24,000) the spend has passed 20,000
    assert statuses == [200, 200, 200, 200, 429]
    assert body["error"]["code"] == "insufficient_quota"
    assert (await _chat(session, b.url, secret))[0] == 429  # the other replica too
    period_a = await _period(session, a.url, secret)
    assert period_a == await _period(session, b.url, secret)
    assert period_a["spend_usd"] == 4 * COST_MICRO / 1e6
    assert period_a["spend_usd"] < 0.02 + COST_MICRO / 1e6  # overrun: one request at most
