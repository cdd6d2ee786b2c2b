"""Prometheus metrics: timings match a configured simulator; backpressure is visible."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.rawclient import RawSSEClient

URL = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]
SIM = {"name": "paced", "provider": "sim", "ttft_ms": 200, "itl_ms": 20, "output_tokens": 50}


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_timing_histograms_match_the_simulator(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    client = await gateway(models=[SIM])
    resp = await client.post(URL, json={"model": "paced", "messages": MSGS, "stream": True})
    await resp.read()
    reg, lab = metrics.registry, {"model": "paced", "provider": "sim"}
    # Counts are exact: one stream, 50 content events, so 49 gaps.
    assert value(reg, "sluice_time_to_first_token_seconds_count", **lab) == 1
    assert value(reg, "sluice_upstream_time_to_first_token_seconds_count", **lab) == 1
    assert value(reg, "sluice_inter_token_latency_seconds_count", **lab) == 49
    assert value(reg, "sluice_time_per_output_token_seconds_count", **lab) == 1
    assert value(reg, "sluice_stream_duration_seconds_count", **lab) == 1
    assert value(reg, "sluice_output_tokens_total", **lab) == 50
    # Means within a band about the configured timing, not the machine's speed:
    # the simulator paces by deadlines, so lateness does not accumulate.
    ttft = value(reg, "sluice_time_to_first_token_seconds_sum", **lab)
    upstream_ttft = value(reg, "sluice_upstream_time_to_first_token_seconds_sum", **lab)
    itl_mean = value(reg, "sluice_inter_token_latency_seconds_sum", **lab) / 49
    tpot = value(reg, "sluice_time_per_output_token_seconds_sum", **lab)
    assert 0.2 <= ttft < 0.3
    assert 0.2 <= upstream_ttft <= ttft
    assert 0.018 <= itl_mean < 0.025
    assert 0.018 <= tpot < 0.025
    assert abs(tpot - itl_mean) < 1e-6  # one event per token: TPOT == mean ITL
    assert 0.2 + 49 * 0.02 <= value(reg, "sluice_stream_duration_seconds_sum", **lab) < 1.6
    assert value(reg, "sluice_stream_terminations_total", reason="completed", **lab) == 1
    assert value(reg, "sluice_requests_total", route=URL, method="POST", status="200") == 1


async def _stream_raw(client: Any, *, pause_s: float, events: int) -> list[bytes]:
    raw = await RawSSEClient.open(
        client.server.host,
        client.server.port,
        URL,
        {"model": "up", "messages": MSGS, "stream": True},
    )
    out: list[bytes] = []
    try:
        while True:
            got = await raw.events(limit=1)
            if not got:
                break
            out += got
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        raw.close()
    return out


@pytest.mark.parametrize("slow", [True, False], ids=["slow-reader", "fast-reader"])
async def test_backpressure_counters_follow_the_reader(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics, slow: bool
) -> None:
    n = 400
    pad = "x" * 2000
    fake_openai.script = Script(
        events=[sse(chunk(f"{i} {pad}")) for i in range(n)] + [sse("[DONE]")]
    )
    client = await gateway(
        models=[openai_model(fake_openai, stream_usage=False)],
        stream={"downstream_buffer_bytes": 16384},
    )
    # A slow reader takes one event every 2 ms (~1 MB/s) against a fast upstream;
    # a fast one reads as fast as it can.
    received = await _stream_raw(client, pause_s=0.002 if slow else 0.0, events=n)
    assert len(received) == n + 1
    await asyncio.sleep(0.05)
    reg, route = metrics.registry, {"route": URL}
    waits = value(reg, "sluice_backpressure_waits_total", **route)
    wait_count = value(reg, "sluice_backpressure_wait_seconds_count", **route)
    buffer_count = value(reg, "sluice_connection_write_buffer_bytes_count", **route)
    buffer_sum = value(reg, "sluice_connection_write_buffer_bytes_sum", **route)
    assert buffer_count == n + 1  # one sample per event written
    assert waits == wait_count
    if slow:
        # Events that arrived in one upstream read go out in one write and one
        # drain (Stream._batch), so a slow reader waits about once per write.
        assert waits > n / 20
        assert buffer_sum / buffer_count > 1024
    else:
        # Near zero, not zero: the kernel may still be moving the previous event.
        assert waits < n / 4
    assert value(reg, "sluice_write_buffer_bytes") == 0  # nothing queued once it ended


async def test_upstream_failure_counts_upstream_error(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="close")
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    await resp.read()
    reg = metrics.registry
    lab = {"model": "up", "provider": "openai"}
    assert value(reg, "sluice_stream_terminations_total", reason="upstream_error", **lab) == 1
    assert value(reg, "sluice_stream_terminations_total", reason="completed", **lab) == 0


async def test_metrics_endpoint_passes_promtool(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.post(URL, json={"model": "sim", "messages": MSGS, "stream": True})
    await resp.read()
    text = await (await client.get("/metrics")).text()
    for name in (
        "sluice_requests_total", "sluice_streams_active", "sluice_time_to_first_token_seconds",
        "sluice_upstream_time_to_first_token_seconds", "sluice_inter_token_latency_seconds",
        "sluice_time_per_output_token_seconds", "sluice_stream_duration_seconds",
        "sluice_output_tokens_total", "sluice_input_tokens_total",
        "sluice_stream_terminations_total", "sluice_connection_write_buffer_bytes",
        "sluice_write_buffer_bytes", "sluice_backpressure_waits_total",
        "sluice_backpressure_wait_seconds", "sluice_upstream_cancel_seconds",
        "sluice_upstream_retries_total", "sluice_admission_rejections_total",
        "sluice_build_info", "sluice_connection_write_buffer_limit_bytes",
    ):  # fmt: skip
        assert f"# TYPE {name} " in text, name
    proc = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    assert proc.returncode == 0, out.decode()


async def test_openmetrics_negotiation(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")
