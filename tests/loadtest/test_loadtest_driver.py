"""The load driver against the mock upstream in-process: every client profile,
closed and open loop, both dialects."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.client.driver import LoadSpec, run_phase
from loadtest.client.profiles import Profile, Target
from loadtest.mock.scenario import MockScenario
from loadtest.mock.upstream import STATE, MockConfig, create_mock_app
from loadtest.report.stats import summarize

SC = MockScenario(ttft_ms=5, itl_ms=5, tokens=12)
MIX = (
    Profile("normal", "normal", 2.0),
    Profile("slow", "slow", 1.0, read_bytes_per_s=64_000, read_chunk=1024),
    Profile("stalled", "stalled", 1.0),
    Profile("dmid", "disconnect_mid", 1.0, disconnect_after_tokens=(2, 5)),
    Profile(
        "dttft",
        "disconnect_ttft",
        1.0,
        disconnect_after_s=0.05,
        scenario=MockScenario(ttft_ms=1000, tokens=3),
    ),
)


async def _records(server: Any) -> list[dict[str, Any]]:
    app = server.app
    return [
        {
            "client_id": r.client_id,
            "peer_closed_mono": r.peer_closed_mono,
            "completed": r.completed,
            "ended_mono": r.ended_mono,
        }
        for r in app[STATE].records.values()
    ]


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_closed_loop_mix(aiohttp_server: Any, dialect: str) -> None:
    server = await aiohttp_server(create_mock_app(MockConfig()))
    target = Target("direct", "127.0.0.1", server.port, "mock", dialect)  # type: ignore[arg-type]
    run = await run_phase(target, LoadSpec(MIX, SC, concurrency=6, duration_s=0.6), "t")
    s = summarize(run, await _records(server))
    p = s["profiles"]
    assert p["normal"]["completed"] == p["normal"]["requests"] > 0
    assert p["slow"]["completed"] == p["slow"]["requests"] > 0
    assert p["stalled"]["disconnected_on_purpose"] == p["stalled"]["requests"] == 1
    assert p["dmid"]["disconnected_on_purpose"] == p["dmid"]["requests"] > 0
    assert p["dttft"]["tokens"] == 0
    assert s["frames_lost"] == 0
    assert s["cancel"]["latency_ms"] is not None
    assert s["cancel"]["unmatched"] == 0


async def test_open_loop_with_budget(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_mock_app(MockConfig()))
    target = Target("direct", "127.0.0.1", server.port, "mock")
    spec = LoadSpec(
        (Profile("normal", "normal"),), SC, mode="open", rate=200.0, duration_s=5.0, max_requests=15
    )
    run = await run_phase(target, spec, "o")
    assert len(run.results) == 15
    assert all(r.done and r.tokens == SC.tokens for r in run.results)
