"""Anthropic-to-Anthropic traffic is relayed faithfully (data bytes unchanged,
``ping`` dropped), however the upstream's bytes are split across reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fake_anthropic import (
    MESSAGE_STOP,
    PING,
    FakeAnthropic,
    aevent,
    anthropic_model,
    block_stop,
    delta,
    message_delta,
    message_start,
    parse_sse,
    text_block,
    thinking_block,
    tool_block,
)
from tests.fakes import Script
from tests.helpers import GatewayFactory

MSGS = [{"role": "user", "content": "hi"}]


def _events() -> list[dict[str, Any]]:
    start = message_start()
    start["message"]["usage"]["cache_read_input_tokens"] = 3
    cite = {"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "x"}}
    citation = {"type": "content_block_delta", "index": 1, "delta": cite}
    return [
        start, PING, thinking_block(0), delta(0, thinking="思考中… 🤔"),
        delta(0, signature="EqQBCkgIARAB"), block_stop(0),
        text_block(1), delta(1, text="héllo wörld — 日本語 🎉"), citation, block_stop(1),
        tool_block(2, "get_weather"), delta(2, partial_json='{"city": "Par'),
        delta(2, partial_json='is"}'), block_stop(2),
        {**message_delta("tool_use", 42), "vendor_extension": {"nested": [1, 2]}},
        PING, MESSAGE_STOP,
    ]  # fmt: skip


@pytest.mark.parametrize("piece", [1, 5, 4096], ids=lambda n: f"{n}-byte-reads")
async def test_faithful_relay_across_split_reads(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic, piece: int
) -> None:
    events = _events()
    wire = b"".join(aevent(e) for e in events)
    pieces = [wire[i : i + piece] for i in range(0, len(wire), piece)]
    fake_anthropic.script = Script(events=pieces, itl_s=0.0005 if piece < 4096 else 0)
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post(
        "/v1/messages", json={"model": "claude", "max_tokens": 64, "messages": MSGS, "stream": True}
    )
    assert resp.status == 200
    body = await resp.read()
    expected = b"".join(aevent(e) for e in events if e["type"] != "ping")
    assert body == expected
    names = [name for name, _ in parse_sse(body.decode())]
    assert names[-1] == "message_stop" and "ping" not in names
    assert orjson.loads(body.split(b"data: ")[1].split(b"\n")[0]) == events[0]
