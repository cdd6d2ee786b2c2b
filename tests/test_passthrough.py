"""Same-dialect traffic is relayed faithfully, however the upstream's bytes are split."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fakes import FakeOpenAI, Script, chunk
from tests.helpers import GatewayFactory, openai_model

URL = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def _upstream_events() -> list[dict[str, Any]]:
    tool_delta = {
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]
    }  # fmt: skip
    two_choices = chunk("a")
    two_choices["choices"].append({"index": 1, "delta": {"content": "b"}, "finish_reason": None})
    with_logprobs = chunk("ok")
    with_logprobs["choices"][0]["logprobs"] = {
        "content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107], "top_logprobs": []}]
    }
    return [
        chunk("", role="assistant"),
        chunk(reasoning_content="thinking… 🤔"),
        chunk("héllo wörld — 日本語 🎉"),
        chunk(**tool_delta),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": "Par'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": 'is"}'}}]),
        two_choices,
        with_logprobs,
        {**chunk("x"), "system_fingerprint": "fp_1", "vendor_extension": {"nested": [1, 2]}},
        chunk(finish="tool_calls"),
        {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
         "model": "up-model", "choices": [],
         "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}},
    ]  # fmt: skip


def _wire(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _data_lines(text: bytes) -> list[bytes]:
    return [line[6:] for line in text.split(b"\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("piece", [1, 3, 7, 4096], ids=lambda n: f"{n}-byte-reads")
async def test_faithful_relay_across_split_reads(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, piece: int
) -> None:
    events = _upstream_events()
    wire = _wire(events)
    pieces = [wire[i : i + piece] for i in range(0, len(wire), piece)]
    # A short pause between writes makes each piece its own TCP segment and read.
    fake_openai.script = Script(events=pieces, itl_s=0.0002 if piece < 10 else 0)
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(
        URL,
        json={"model": "up", "messages": MSGS, "stream": True,
              "stream_options": {"include_usage": True}},
    )  # fmt: skip
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in resp.headers
    received = _data_lines(await resp.read())
    assert received == [orjson.dumps(e) for e in events] + [b"[DONE]"]


async def test_usage_chunk_the_client_did_not_ask_for_is_not_relayed(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    events = _upstream_events()
    fake_openai.script = Script(events=[_wire(events)])
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    received = _data_lines(await resp.read())
    assert received == [orjson.dumps(e) for e in events[:-1]] + [b"[DONE]"]
    assert fake_openai.records[0].body["stream_options"] == {"include_usage": True}


async def test_unknown_request_fields_reach_the_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[_wire([chunk("x")])])
    client = await gateway(models=[openai_model(fake_openai, stream_usage=False)])
    body = {
        "model": "up", "messages": MSGS, "stream": True, "top_k": 5,
        "chat_template_kwargs": {"enable_thinking": True}, "tools": [{"type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}}}],
    }  # fmt: skip
    resp = await client.post(URL, json=body)
    await resp.read()
    sent = fake_openai.records[0].body
    assert sent == {**body, "model": "up-model"}


async def test_events_of_one_upstream_read_go_out_in_one_write(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """Stream._batch: 40 events the upstream sent in one write reach the client
    as far fewer HTTP chunks (one socket write each), byte for byte, each
    still counted as an event and as a token for the ITL."""
    events = [chunk(f"token {i}") for i in range(40)]
    fake_openai.script = Script(events=[_wire(events)])
    client = await gateway(models=[openai_model(fake_openai, stream_usage=False)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    assert resp.status == 200
    body, http_chunks = b"", 0
    async for data, end_of_chunk in resp.content.iter_chunks():
        body += data
        http_chunks += end_of_chunk
    assert _data_lines(body) == [orjson.dumps(e) for e in events] + [b"[DONE]"]
    # One write for the first event (it carries the headers through aiohttp),
    # then the rest of that read at once; without batching, 41 chunks.
    assert http_chunks <= 4


async def test_events_before_an_unreadable_one_in_the_same_read_still_go_out(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """A batch cut by an event the gateway cannot read: the events before it
    reach the client, then the error event (nothing that arrived is lost)."""
    good = [chunk(f"token {i}") for i in range(3)]
    bad = {**chunk("x"), "choices": [{"index": 0, "delta": 5}]}
    fake_openai.script = Script(events=[_wire([*good, bad])])
    client = await gateway(models=[openai_model(fake_openai, stream_usage=False)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    assert resp.status == 200
    lines = _data_lines(await resp.read())
    assert lines[:3] == [orjson.dumps(e) for e in good]
    (error,) = lines[3:]
    assert orjson.loads(error)["error"]["type"] == "upstream_error"
