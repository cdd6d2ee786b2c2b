"""Fixtures for the load-test package: the mock upstream on a real socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loadtest.mock.scenario import MockScenario
from loadtest.mock.upstream import MockConfig, create_mock_app

FAST = MockScenario(ttft_ms=5, itl_ms=2, tokens=8)

MockFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def mock_client(aiohttp_client: Any) -> MockFactory:
    """``await mock_client(scenario=...)`` -> a TestClient on the mock upstream.

    aiohttp's test server runs with ``handler_cancellation=True``, as the CLI does.
    """

    async def make(scenario: MockScenario = FAST) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(
            create_mock_app(MockConfig(scenario=scenario))
        )
        return client

    return make


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """``[(event name or None, data)]`` from a complete SSE body."""
    out: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        out.append((name, "\n".join(data)))
    return out
