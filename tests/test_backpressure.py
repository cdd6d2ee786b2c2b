"""Backpressure: a client that stops reading stops the upstream being read."""

from __future__ import annotations

from typing import Any

from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, upstream_plateau
from tests.rawclient import RawSSEClient

N_EVENTS = 20_000
PAD = "x" * 200


async def test_stalled_client_pauses_upstream_then_gets_everything(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    buffer = 65536
    fake_openai.script = Script(
        events=[sse(chunk(f"{i} {PAD}")) for i in range(N_EVENTS)] + [sse("[DONE]")],
        sndbuf=16384,
    )
    offered = sum(len(e) for e in fake_openai.script.events)
    client = await gateway(
        models=[openai_model(fake_openai, stream_usage=False)],
        stream={"downstream_buffer_bytes": buffer},
    )
    body: dict[str, Any] = {
        "model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}],
    }  # fmt: skip
    raw = await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions", body
    )  # type: ignore[arg-type]
    try:
        assert raw.status == 200
        first = await raw.events(limit=1)
        ahead = await upstream_plateau(fake_openai)
        print(f"\nupstream got {ahead} bytes out of {offered} ahead of a stalled client")
        # Bounded by the per-connection buffer (64 KiB) plus the kernel's share
        # on both hops: gateway's upstream receive queue (SO_RCVBUF 64 KiB,
        # doubled), the fake's send queue, the client's receive queue. Measured
        # ~310 KB; without the upstream SO_RCVBUF bound it was ~2.4 MB.
        assert ahead < 1 << 20
        assert not fake_openai.records[0].completed
        rest = await raw.events()
    finally:
        raw.close()
    events = first + rest
    assert len(events) == N_EVENTS + 1
    for i, event in enumerate(events[:-1]):
        assert event.startswith(b'data: {"id"')
        assert f'"content":"{i} '.encode() in event
    assert events[-1] == b"data: [DONE]"
    assert fake_openai.records[0].completed
