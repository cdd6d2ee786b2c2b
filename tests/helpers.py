"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from aiohttp.test_utils import TestClient

from gateway.config import Settings, parse_settings
from tests.fakes import FakeOpenAI

GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

SIM_FAST = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 1, "output_tokens": 8}


def settings_from(**sections: Any) -> Settings:
    """Settings from keyword sections, e.g. ``models=[{...}]``, ``stream={...}``."""
    return parse_settings(sections)


def openai_model(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    """A config entry routing model ``up`` to the fake as ``up-model``."""
    return {
        "name": "up",
        "provider": "openai",
        "upstream_model": "up-model",
        "base_url": fake.base_url,
        **extra,
    }


def sdk(client: TestClient[Any, Any]) -> openai.AsyncOpenAI:
    """The official SDK pointed at the gateway under test."""
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="k", max_retries=0)


async def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port``."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


async def upstream_plateau(fake: FakeOpenAI, *, quiet_polls: int = 5, interval: float = 0.1) -> int:
    """Poll the fake upstream's bytes out (its first request's) until they stop
    growing for ``quiet_polls`` polls, at most 200 polls; return them. What a
    stalled client let the upstream get out, for every fake (they all
    record as :class:`~tests.fakes.FakeOpenAI` does)."""
    last, same = -1, 0
    for _ in range(200):
        await asyncio.sleep(interval)
        now = fake.records[0].bytes_out
        same = same + 1 if now == last else 0
        last = now
        if same >= quiet_polls:
            break
    return last
