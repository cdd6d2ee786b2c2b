"""Timeouts, heartbeats and late commit, against a fake upstream that stalls."""

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
BODY: dict[str, Any] = {
    "model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}],
}  # fmt: skip
LAB = {"model": "up", "provider": "openai"}


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def closed(fake: FakeOpenAI, index: int = 0) -> None:
    async with asyncio.timeout(5):
        while fake.records[index].closed_at is None:
            await asyncio.sleep(0.01)


def events_of(text: str) -> list[str]:
    return [e for e in text.split("\n\n") if e]


async def test_ttft_timeout_before_commit_is_504(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(events=[sse(chunk("late"))], ttft_s=30)
    client = await gateway(
        models=[openai_model(fake_openai)],
        stream={"ttft_timeout_s": 0.3, "heartbeat_interval_s": 10},
    )
    resp = await client.post(URL, json=BODY)
    assert resp.status == 504
    assert (await resp.json())["error"]["type"] == "upstream_timeout"
    await closed(fake_openai)
    assert value(metrics.registry, "sluice_stream_terminations_total",
                 reason="upstream_timeout", **LAB) == 1  # fmt: skip


async def test_ttft_timeout_after_heartbeats_is_an_error_event(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("late"))], ttft_s=30)
    client = await gateway(
        models=[openai_model(fake_openai)],
        stream={"ttft_timeout_s": 0.5, "heartbeat_interval_s": 0.1},
    )
    resp = await client.post(URL, json=BODY)
    assert resp.status == 200  # committed by the first heartbeat
    text = await resp.text()
    assert text.count(": ping\n\n") >= 2
    last = events_of(text)[-1]
    assert '"type":"upstream_timeout"' in last
    assert "data: [DONE]" not in text
    await closed(fake_openai)


async def test_idle_timeout_mid_stream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a")), sse(chunk("b"))], then="hang")
    client = await gateway(
        models=[openai_model(fake_openai)],
        stream={"idle_timeout_s": 0.3, "heartbeat_interval_s": 10},
    )
    resp = await client.post(URL, json=BODY)
    events = events_of(await resp.text())
    assert len(events) == 3
    assert '"type":"upstream_stalled"' in events[-1]
    await closed(fake_openai)
    assert value(metrics.registry, "sluice_stream_terminations_total",
                 reason="upstream_stalled", **LAB) == 1  # fmt: skip


async def test_deadline(gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i}")) for i in range(100)] + [sse("[DONE]")], itl_s=0.05
    )
    client = await gateway(models=[openai_model(fake_openai)], stream={"deadline_s": 0.5})
    resp = await client.post(URL, json=BODY)
    events = events_of(await resp.text())
    assert 3 < len(events) < 100
    assert '"type":"deadline_exceeded"' in events[-1]
    await closed(fake_openai)
    assert value(metrics.registry, "sluice_stream_terminations_total",
                 reason="deadline", **LAB) == 1  # fmt: skip


async def test_send_timeout_drops_a_client_that_takes_nothing(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"{i} " + "x" * 1000)) for i in range(5000)] + [sse("[DONE]")]
    )
    client = await gateway(
        models=[openai_model(fake_openai)],
        stream={"send_timeout_s": 0.3, "downstream_buffer_bytes": 8192},
    )
    raw = await RawSSEClient.open(client.server.host, client.server.port, URL, BODY)
    try:
        await raw.events(limit=1)
        await closed(fake_openai)  # never read again: the gateway gives up on us
    finally:
        raw.close()
    await asyncio.sleep(0.05)
    assert value(metrics.registry, "sluice_stream_terminations_total",
                 reason="slow_client", **LAB) == 1  # fmt: skip


async def _idle_proxy(
    target_host: str, target_port: int, idle_s: float
) -> tuple[asyncio.Server, list[str]]:
    """A TCP proxy that cuts a connection after ``idle_s`` without server bytes,
    like a load balancer's idle timeout."""
    cuts: list[str] = []

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(target_host, target_port)

        async def upstream() -> None:
            while data := await c_reader.read(65536):
                s_writer.write(data)
                await s_writer.drain()

        async def downstream() -> None:
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        data = await s_reader.read(65536)
                except TimeoutError:
                    cuts.append("idle")
                    return
                if not data:
                    return
                c_writer.write(data)
                await c_writer.drain()

        up = asyncio.create_task(upstream())
        try:
            await downstream()
        finally:
            up.cancel()
            c_writer.close()
            s_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, cuts


@pytest.mark.parametrize(("heartbeat_s", "survives"), [(0.5, True), (30.0, False)])
async def test_client_behind_idle_timeout_proxy(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, heartbeat_s: float, survives: bool
) -> None:
    # A 5 s first-token wait behind a proxy that cuts connections idle for 2 s.
    fake_openai.script = Script(events=[sse(chunk("finally")), sse("[DONE]")], ttft_s=5.0)
    client = await gateway(
        models=[openai_model(fake_openai)], stream={"heartbeat_interval_s": heartbeat_s}
    )
    proxy, cuts = await _idle_proxy(client.server.host, client.server.port, idle_s=2.0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        raw = await RawSSEClient.open("127.0.0.1", port, URL, BODY)
        try:
            if survives:
                assert raw.status == 200
                events = await raw.events()
                assert events[-1] == b"data: [DONE]"
                assert any(b'"content":"finally"' in e for e in events)
                assert cuts == []
        except ConnectionError:
            pytest.fail("the proxy cut the connection despite heartbeats")
        finally:
            raw.close()
    except ConnectionError:
        assert not survives
        assert cuts == ["idle"]
    else:
        if not survives:
            pytest.fail("expected the proxy to cut the silent connection")
    finally:
        proxy.close()
