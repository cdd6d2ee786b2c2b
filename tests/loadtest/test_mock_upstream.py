"""The mock upstream: both dialects, pacing, faults, records."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
import pytest

from loadtest.mock.frames import FrameSet, sse_event
from loadtest.mock.scenario import MockScenario
from tests.fake_anthropic import aevent
from tests.fakes import chunk, sse
from tests.loadtest.conftest import FAST, MockFactory, parse_sse


def _chat(
    prompt: str = "hello", stream: bool = True, usage: bool = True, model: str = "m"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def _msg(prompt: str = "hello", stream: bool = True) -> dict[str, Any]:
    return {
        "model": "m",
        "stream": stream,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": prompt}],
    }


async def _records(client: Any) -> list[dict[str, Any]]:
    resp = await client.get("/_mock/records")
    body: dict[str, Any] = await resp.json()
    return list(body["records"])


async def test_openai_stream_shape(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post("/v1/chat/completions", json=_chat())
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await resp.text())
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert content == [f"t{i} " for i in range(FAST.tokens)]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == FAST.tokens


async def test_openai_stream_without_usage_has_no_usage_chunk(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post("/v1/chat/completions", json=_chat(usage=False))
    events = parse_sse(await resp.text())
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert not any("usage" in c for c in chunks)
    assert len(chunks) == FAST.tokens + 2


async def test_anthropic_stream_shape(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post("/v1/messages", json=_msg())
    assert resp.status == 200
    events = parse_sse(await resp.text())
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * FAST.tokens,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for (n, _), d in zip(events, datas, strict=True))
    texts = [d["delta"]["text"] for d in datas if d["type"] == "content_block_delta"]
    assert texts == [f"t{i} " for i in range(FAST.tokens)]
    assert datas[-2]["usage"]["output_tokens"] == FAST.tokens


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", _chat(stream=False)), ("/v1/messages", _msg(stream=False))],
)
async def test_non_streaming(mock_client: MockFactory, path: str, body: dict[str, Any]) -> None:
    client = await mock_client()
    resp = await client.post(path, json=body)
    assert resp.status == 200
    data = await resp.json()
    expected = "".join(f"t{i} " for i in range(FAST.tokens))
    if path.endswith("completions"):
        assert data["choices"][0]["message"]["content"] == expected
    else:
        assert data["content"][0]["text"] == expected


async def test_scenario_from_model_prompt_and_headers(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post("/v1/chat/completions", json=_chat(model="mock-n3-itl1-ttft1"))
    assert len(parse_sse(await resp.text())) == 3 + 4
    resp = await client.post(
        "/v1/chat/completions", json=_chat(prompt="x [mock tokens=2] y", model="mock-n3")
    )
    assert len(parse_sse(await resp.text())) == 2 + 4
    resp = await client.post(
        "/v1/chat/completions", json=_chat(prompt="[mock tokens=2]"), headers={"x-mock-tokens": "4"}
    )
    assert len(parse_sse(await resp.text())) == 4 + 4


async def test_bad_scenario_is_400(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post("/v1/chat/completions", json=_chat(), headers={"x-mock-fault": "nope"})
    assert resp.status == 400
    resp = await client.post("/v1/chat/completions", json=_chat(), headers={"x-mock-bogus": "1"})
    assert resp.status == 400


async def test_pacing_follows_deadlines(mock_client: MockFactory) -> None:
    # Lower bounds only: a deadline is never met early. No upper wall-clock bound.
    sc = MockScenario(ttft_ms=30, itl_ms=10, tokens=6)
    client = await mock_client(sc)
    resp = await client.post("/v1/chat/completions", json=_chat())
    await resp.read()
    (rec,) = await _records(client)
    assert rec["frames_written"] == sc.tokens
    assert rec["first_token_mono"] - rec["started_mono"] >= 0.030 - 0.001
    assert rec["ended_mono"] - rec["started_mono"] >= 0.030 + 0.010 * (sc.tokens - 1) - 0.001
    assert rec["completed"] is True
    assert rec["outcome"] == "completed"
    assert rec["bytes_drained"] == rec["bytes_written"] > 0


@pytest.mark.parametrize(("fault", "status"), [("http_503", 503), ("http_429", 429)])
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_http_faults(mock_client: MockFactory, fault: str, status: int, dialect: str) -> None:
    client = await mock_client()
    path, body = (
        ("/v1/chat/completions", _chat()) if dialect == "openai" else ("/v1/messages", _msg())
    )
    resp = await client.post(
        path, json=body, headers={"x-mock-fault": fault, "x-mock-retry-after": "7"}
    )
    assert resp.status == status
    assert resp.headers["Retry-After"] == "7"
    data = await resp.json()
    if dialect == "openai":
        assert set(data["error"]) >= {"message", "type", "code"}
    else:
        assert data["type"] == "error"
        assert data["error"]["type"] == (
            "rate_limit_error" if status == 429 else "overloaded_error"
        )
    (rec,) = await _records(client)
    assert rec["status"] == status


async def test_error_mid_stream_openai(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post(
        "/v1/chat/completions",
        json=_chat(),
        headers={"x-mock-fault": "error_mid", "x-mock-fault-at": "3"},
    )
    events = parse_sse(await resp.text())
    assert (None, "[DONE]") not in events
    last = json.loads(events[-1][1])
    assert last["error"]["type"] == "server_error"
    assert len(events) == 1 + 3 + 1  # role chunk, 3 tokens, error


async def test_error_mid_stream_anthropic(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post(
        "/v1/messages", json=_msg(), headers={"x-mock-fault": "error_mid", "x-mock-fault-at": "2"}
    )
    events = parse_sse(await resp.text())
    name, data = events[-1]
    assert name == "error"
    assert json.loads(data)["error"]["type"] == "overloaded_error"
    assert [n for n, _ in events].count("content_block_delta") == 2
    assert "message_stop" not in [n for n, _ in events]


async def test_close_mid_stream_drops_the_connection(mock_client: MockFactory) -> None:
    client = await mock_client()
    resp = await client.post(
        "/v1/chat/completions",
        json=_chat(),
        headers={"x-mock-fault": "close_mid", "x-mock-fault-at": "4"},
    )
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    (rec,) = await _records(client)
    assert rec["outcome"] == "close_mid"
    assert rec["frames_written"] == 4


async def test_stall_mid_stream_stops_sending_then_closes(mock_client: MockFactory) -> None:
    client = await mock_client()
    headers = {"x-mock-fault": "stall_mid", "x-mock-fault-at": "2", "x-mock-stall-s": "0.2"}
    resp = await client.post("/v1/chat/completions", json=_chat(), headers=headers)
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in resp.content.iter_any():
            got += chunk
    assert got.count(b'"content":"t') == 2
    (rec,) = await _records(client)
    assert rec["outcome"] == "stall_mid"
    assert rec["ended_mono"] - rec["first_token_mono"] >= 0.2 - 0.001


async def test_records_peer_close_and_client_id(mock_client: MockFactory) -> None:
    client = await mock_client(MockScenario(ttft_ms=0, itl_ms=20, tokens=500))
    resp = await client.post("/v1/chat/completions", json=_chat(prompt="hi [lt-id:abc-1]"))
    await resp.content.readuntil(b'"content":"t2 ')
    resp.close()  # the client goes away mid-stream
    rec: dict[str, Any] = {}
    for _ in range(200):  # bounded: up to ~2 s
        (rec,) = await _records(client)
        if rec["peer_closed_mono"] is not None:
            break
        await asyncio.sleep(0.01)
    assert rec["client_id"] == "abc-1"
    assert rec["outcome"] == "peer_closed"
    assert rec["peer_closed_wall"] is not None
    assert 0 < rec["frames_written"] < 500
    assert rec["completed"] is False
    reset = await client.post("/_mock/reset")
    assert reset.status == 200
    assert await _records(client) == []


def test_one_sse_encoder_for_the_mock_and_the_test_fakes() -> None:
    """tests/fakes.py and tests/fake_anthropic.py write their events with the
    mock upstream's encoder, byte for byte what they wrote before."""
    body = chunk("hi")
    assert sse(body) == b"data: " + orjson.dumps(body) + b"\n\n"
    assert sse("[DONE]") == b"data: [DONE]\n\n" == sse_event("[DONE]")
    ping = {"type": "ping"}
    assert aevent(ping) == b'event: ping\ndata: {"type":"ping"}\n\n' == sse_event(ping, "ping")
    assert aevent(ping, "other").startswith(b"event: other\n")
    frames = FrameSet("openai", "chatcmpl-1", "m", 3)
    assert frames.error().startswith(b'data: {"error":') and frames.error().endswith(b"\n\n")
