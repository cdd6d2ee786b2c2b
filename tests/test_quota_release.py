"""A key's concurrency slot is given back however a request ends (client gone,
timeout, upstream failure), and post-paid tokens overrun a budget by at most
what the requests in flight spend."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.keyhelp import MSGS, make_key, oai, poll

STREAM = {"model": "up", "stream": True, "messages": MSGS}


async def open_requests(client: TestClient[Any, Any], secret: str) -> int:
    resp = await client.get("/v1/sluice/key", headers={"Authorization": f"Bearer {secret}"})
    value: int = (await resp.json())["usage"]["open_requests"]
    return value


async def assert_slot_free(client: TestClient[Any, Any], secret: str, fake: FakeOpenAI) -> None:
    """The one slot is free again: the key's view says so, and a request is admitted."""

    async def free() -> bool:
        return await open_requests(client, secret) == 0

    await poll(free)
    fake.script = Script(events=[sse(chunk("ok")), sse("[DONE]")])
    async with oai(client, secret) as sdk:
        done = await sdk.chat.completions.create(model="up", messages=MSGS)  # type: ignore[arg-type]
    assert done.choices[0].message.content == "hi"


async def _second_is_refused(client: TestClient[Any, Any], secret: str) -> None:
    async with oai(client, secret) as sdk:
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="up", messages=MSGS)  # type: ignore[arg-type]
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["Retry-After"] == "1"


async def test_slot_released_after_client_disconnect(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    secret, key = make_key("team-a", max_concurrent_streams=1)
    fake_openai.script = Script(events=[sse(chunk("late"))], ttft_s=30.0)
    client = await gateway(models=[openai_model(fake_openai)], auth={"keys": [key]})
    _, writer = await asyncio.open_connection(client.server.host, client.server.port)
    payload = b'{"model":"up","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {secret}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()

    async def upstream_called() -> bool:
        return bool(fake_openai.records)

    await poll(upstream_called)
    assert await open_requests(client, secret) == 1
    await _second_is_refused(client, secret)
    writer.close()
    await assert_slot_free(client, secret, fake_openai)


async def test_slot_released_after_timeout(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    secret, key = make_key("team-a", max_concurrent_streams=1)
    fake_openai.script = Script(events=[sse(chunk("late"))], ttft_s=30.0)
    model = openai_model(fake_openai, stream={"ttft_timeout_s": 0.3})
    client = await gateway(models=[model], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        with pytest.raises(openai.APIStatusError) as info:
            await sdk.chat.completions.create(model="up", messages=MSGS, stream=True)  # type: ignore[arg-type]
    assert info.value.status_code == 504
    await assert_slot_free(client, secret, fake_openai)


@pytest.mark.parametrize("how", ["status-500", "cut-mid-stream"])
async def test_slot_released_after_upstream_error(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, how: str
) -> None:
    secret, key = make_key("team-a", max_concurrent_streams=1)
    if how == "status-500":
        fake_openai.script = Script(status=500)
    else:
        fake_openai.script = Script(events=[sse(chunk("a")), sse(chunk("b"))], then="close")
    client = await gateway(models=[openai_model(fake_openai)], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        with pytest.raises(openai.APIError):
            stream = await sdk.chat.completions.create(model="up", messages=MSGS, stream=True)  # type: ignore[arg-type]
            async for _ in stream:
                pass
    await assert_slot_free(client, secret, fake_openai)


async def test_budget_overrun_is_bounded_by_requests_in_flight(gateway: GatewayFactory) -> None:
    """Tokens are charged when a response ends: every request admitted while
    the key was under its budget may finish. Measured: N requests in flight at
    once against a budget of 1 token spend N x (their tokens); the overrun is
    exactly what they spent past the budget, and then the key is refused."""
    budget, in_flight = 1, 5
    secret, key = make_key("team-a", token_budget=budget)
    slow = {"name": "sim", "provider": "sim", "ttft_ms": 300, "itl_ms": 1, "output_tokens": 8}
    client = await gateway(models=[slow], auth={"keys": [key]})
    body = {**STREAM, "model": "sim", "stream_options": {"include_usage": True}}
    async with oai(client, secret) as sdk:

        async def one() -> int:
            stream = await sdk.chat.completions.create(**body)
            total = 0
            async for event in stream:
                if event.usage is not None:
                    total = event.usage.total_tokens
            return total

        spent = await asyncio.gather(*(one() for _ in range(in_flight)))
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert info.value.code == "insufficient_quota"
    resp = await client.get("/v1/sluice/key", headers={"Authorization": f"Bearer {secret}"})
    used = (await resp.json())["usage"]["period"]["tokens"]
    assert used == sum(spent)
    overrun = used - budget
    assert 0 < overrun <= in_flight * max(spent)
    print(f"\nbudget {budget} tokens, {in_flight} requests in flight of {max(spent)} tokens "
          f"each: spent {used}, overrun {overrun} tokens")  # fmt: skip
