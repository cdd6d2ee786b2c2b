"""The backpressure proof can fail: its requests are ones the gateway accepts,
failed requests and held streams are counted per side, and the verdict is
"missed" on any failure, any stream not held, or anything not measured."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from gateway.dialects.openai import MAX_TOKENS_LIMIT
from loadtest.client.profiles import Target
from loadtest.measure.backpressure import FLOOD, GATEWAY_MAX_TOKENS, Side, open_side
from loadtest.mock.scenario import MockScenario
from loadtest.procs import free_port
from loadtest.report.common import (
    Check,
    backpressure_section,
    backpressure_verdict,
    targets_table,
)
from tests.helpers import GatewayFactory
from tests.loadtest.conftest import MockFactory

CLIENTS = 3


def _side(errors: int, held: int, slope: float) -> dict[str, Any]:
    trend = {"slope_kib_per_s": slope, "first_mib": 50.0, "last_mib": 50.0, "max_mib": 50.0}
    return {"errors": errors, "streams_held": held, "error_samples": [], "rss_trend": trend}


def _bp(base: dict[str, Any], sluice: dict[str, Any], clients: int = 16) -> dict[str, Any]:
    return {"clients": clients, "baseline": base, "sluice": sluice}


GOOD_BASE = _side(0, 16, 90_000.0)
GOOD_SLUICE = _side(0, 16, 0.1)


def test_verdict_met_only_when_every_stream_held_and_rss_flat() -> None:
    v = backpressure_verdict(_bp(GOOD_BASE, GOOD_SLUICE))
    assert isinstance(v, Check)  # the verdict type every report shares
    assert v.met() is True and v.why == "" and v.failed == 0 and v.verdict() == "met"


def test_verdict_missed_when_every_sluice_request_failed() -> None:
    # Today's run: every Sluice request refused (400), RSS flat because nothing was held.
    v = backpressure_verdict(_bp(GOOD_BASE, _side(2323, 0, 0.0)))
    assert v.met() is False and v.failed == 2323
    assert v.why == "sluice: 2323 requests failed; sluice: 0 of 16 stalled streams held"
    assert v.measured == "0.00 KiB/s vs 90,000.00 KiB/s; held 16 / 0, failed 0 / 2323"


def test_verdict_missed_when_fewer_streams_held() -> None:
    v = backpressure_verdict(_bp(GOOD_BASE, _side(0, 15, 0.1)))
    assert (v.met(), v.why) == (False, "sluice: 15 of 16 stalled streams held")
    assert backpressure_verdict(_bp(_side(0, 12, 90_000.0), GOOD_SLUICE)).ok is False


def test_verdict_missed_when_a_baseline_request_failed() -> None:
    assert backpressure_verdict(_bp(_side(1, 16, 90_000.0), GOOD_SLUICE)).ok is False


def test_verdict_missed_on_an_empty_or_unmeasured_run() -> None:
    assert backpressure_verdict({}).ok is False
    assert backpressure_verdict(_bp({}, {})).ok is False
    assert backpressure_verdict(_bp(GOOD_BASE, GOOD_SLUICE, clients=0)).ok is False
    no_trend = {**GOOD_SLUICE, "rss_trend": None}
    assert backpressure_verdict(_bp(GOOD_BASE, no_trend)).ok is False
    # A baseline that did not grow shows the clients backed nothing up: no proof.
    assert backpressure_verdict(_bp(_side(0, 16, 0.0), GOOD_SLUICE)).ok is False
    # RSS growing under Sluice is the failure the proof is for.
    assert backpressure_verdict(_bp(GOOD_BASE, _side(0, 16, 5_000.0))).ok is False
    assert backpressure_verdict(None).ok is None  # not run: n/a, never "met"


def test_report_shows_counts_errors_and_verdict() -> None:
    sluice = {**_side(7, 0, 0.0), "error_samples": ["HTTP 400: max_tokens too large"]}
    bp = _bp(GOOD_BASE, sluice)
    text = "\n".join(backpressure_section(bp))
    assert "| Sluice | 7 | 0 of 16 |" in text
    assert "- `HTTP 400: max_tokens too large`" in text
    verdict = "| missed (sluice: 7 requests failed; sluice: 0 of 16 stalled streams held) |"
    assert verdict in text
    row = next(line for line in targets_table({"backpressure": bp}) if "Sluice vs baseline" in line)
    assert row.endswith(
        "| missed (sluice: 7 requests failed; sluice: 0 of 16 stalled streams held) |"
    )


def test_flood_asks_for_what_the_gateway_accepts() -> None:
    assert GATEWAY_MAX_TOKENS == MAX_TOKENS_LIMIT
    assert FLOOD.tokens <= MAX_TOKENS_LIMIT


async def _gateway_on(gateway: GatewayFactory, mock_client: MockFactory) -> Target:
    mock = await mock_client()
    model = {
        "name": "mock-openai",
        "provider": "openai",
        "base_url": str(mock.make_url("/v1")),
        "upstream_model": "mock",
    }
    gw = await gateway(models=[model])
    assert gw.port is not None
    return Target("sluice", "127.0.0.1", gw.port, "mock-openai")


async def test_stalled_streams_are_held_through_the_gateway(
    gateway: GatewayFactory, mock_client: MockFactory
) -> None:
    target = await _gateway_on(gateway, mock_client)
    side = Side("sluice")
    try:
        await open_side(side, target, FLOOD, CLIENTS, 10.0)
        assert side.error_samples() == []
        assert side.errors == 0
        assert side.count_held() == CLIENTS
        assert all(s.result.status == 200 and s.result.tokens >= 1 for s in side.streams)
    finally:
        side.release()
    assert side.count_held() == 0


async def test_refused_requests_are_counted_with_their_message(
    gateway: GatewayFactory, mock_client: MockFactory
) -> None:
    target = await _gateway_on(gateway, mock_client)
    too_long = dataclasses.replace(FLOOD, tokens=MAX_TOKENS_LIMIT + 1)
    side = Side("sluice")
    try:
        await open_side(side, target, too_long, CLIENTS, 10.0)
        assert side.errors == CLIENTS
        assert side.count_held() == 0
        [message] = side.error_samples()  # the same refusal three times: one line
        assert message.startswith(f"{CLIENTS} x HTTP 400: ") and "max_tokens" in message
    finally:
        side.release()


async def test_a_stream_the_server_closed_is_not_held(mock_client: MockFactory) -> None:
    mock = await mock_client()
    assert mock.port is not None
    target = Target("direct", "127.0.0.1", mock.port, "mock")
    side = Side("direct")
    try:
        await open_side(side, target, MockScenario(ttft_ms=0, itl_ms=1, tokens=3), CLIENTS, 10.0)
        assert side.errors == 0  # 200 and a first event each: opened, then the stream ended
        async with asyncio.timeout(10):
            while side.count_held() > 0:
                await asyncio.sleep(0.02)
    finally:
        side.release()


async def test_error_event_timeout_and_refused_connection_are_failures(
    mock_client: MockFactory,
) -> None:
    mock = await mock_client()
    assert mock.port is not None
    direct = Target("direct", "127.0.0.1", mock.port, "mock")
    cases = [
        (direct, MockScenario(ttft_ms=0, tokens=5, fault="error_mid", fault_at=0), "error event: "),
        (direct, MockScenario(ttft_ms=5000, tokens=5), "no first event within 0.5 s"),
        (Target("gone", "127.0.0.1", free_port(), "mock"), FLOOD, "ConnectionRefusedError"),
    ]
    for target, scenario, expected in cases:
        side = Side(target.name)
        try:
            await open_side(side, target, scenario, 2, 0.5)
            assert side.errors == 2 and side.count_held() == 0
            [message] = side.error_samples()
            assert message.startswith(f"2 x {expected}"), message
            assert all(s.sock is None for s in side.streams)  # released at once
        finally:
            side.release()
