"""Client keys for tests: a secret, its config entry, SDKs that present it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import openai
from aiohttp.test_utils import TestClient

from gateway.keys import new_secret, sha256_hex

MSGS = [{"role": "user", "content": "hi"}]


def make_key(name: str, **limits: Any) -> tuple[str, dict[str, Any]]:
    """(secret, ``[[auth.keys]]`` entry) for a fresh key."""
    secret = new_secret()
    return secret, {"name": name, "sha256": sha256_hex(secret), **limits}


def oai(client: TestClient[Any, Any], secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=secret, max_retries=0)


def ant(client: TestClient[Any, Any], secret: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=str(client.make_url("")), api_key=secret, max_retries=0
    )


async def away_from_minute_edge(margin_s: float = 3.0) -> None:
    """Wait until the current UTC minute has ``margin_s`` left, so a test that
    counts within one fixed minute window does not straddle two."""
    left = 60 - time.time() % 60
    if left < margin_s:
        await asyncio.sleep(left + 0.05)


async def poll(predicate: Any, timeout_s: float = 10.0, every_s: float = 0.02) -> None:
    """Until ``await predicate()`` is true (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(every_s)
