"""Agent-sized request bodies (issue 26): the 32 MiB default, large bodies
split and forwarded as the client's bytes, the budget of body bytes in
flight (waits, 503, given back on every exit path), image parts through
every dialect pair."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import struct
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.body_budget import BODY_BUDGET, BodyBudget
from gateway.config import ServerSettings
from gateway.errors import BodyBudgetExhausted, InvalidRequest
from gateway.split_body import BULK_BYTES, Segmenter, SplitBody, split, split_segmented
from tests.fake_anthropic import FakeAnthropic, anthropic_model
from tests.fakes import FakeOpenAI
from tests.helpers import GatewayFactory, openai_model

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def png(width: int, height: int, seed: int = 26) -> bytes:
    """A real PNG of random RGB pixels (incompressible: about 3 bytes a pixel)."""
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def image_b64() -> str:
    data = png(1000, 1000)  # ~3 MB
    assert len(data) > 3_000_000
    return base64.b64encode(data).decode()


async def _post(client: TestClient[Any, Any], path: str, raw: bytes) -> ClientResponse:
    """POST JSON bytes (a BytesIO: aiohttp warns on raw bytes over 1 MiB)."""
    headers = {"Content-Type": "application/json"}
    return await client.post(path, data=io.BytesIO(raw), headers=headers)


async def _wait(predicate: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


# -- the default and the split path ------------------------------------------------


def test_default_limit_is_32_mib() -> None:
    assert ServerSettings().max_body_bytes == 32 << 20


async def test_body_over_1_mib_is_forwarded_as_sent(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """A 1.2 MB agent request is accepted by default, split (not decoded),
    and reaches the upstream with every field as the client sent it: only
    ``model`` and ``stream`` set by the gateway."""
    client = await gateway(models=[openai_model(fake_openai)])
    turns = [{"role": "user", "content": f"turn {i}: " + "def f(x): return x\n" * 60}
             for i in range(1000)]  # fmt: skip
    tools = [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]
    body = {"model": "up", "messages": turns, "stream": True, "tools": tools, "x_new": [1, "é"]}
    # A vendor field orjson cannot decode (a 100-bit integer) shows the bytes
    # went upstream as sent, never through Python objects.
    vendor = b'[1267650600228229401496703205377,"' + b"p" * 20_000 + b'"]'
    raw = orjson.dumps(body)[:-1] + b',"x_vendor":' + vendor + b"}"
    assert len(raw) > 1_200_000
    resp = await _post(client, CHAT, raw)
    assert resp.status == 200, await resp.text()
    assert (await resp.text()).endswith("data: [DONE]\n\n")
    sent = fake_openai.records[-1].body
    assert sent["model"] == "up-model" and sent["stream"] is True
    assert sent["messages"] == turns and sent["tools"] == tools and sent["x_new"] == [1, "é"]
    assert sent["x_vendor"][0] == 2**100 + 1
    assert client.server.app[BODY_BUDGET].in_flight == 0


async def test_32_mb_body_streams_through(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    """A 32 MB Messages request (a pasted document) through by default."""
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    document = "x" * (32_000_000)
    body = {"model": "claude", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": document}]}  # fmt: skip
    resp = await _post(client, MESSAGES, orjson.dumps(body))
    assert resp.status == 200, await resp.text()
    assert "message_stop" in await resp.text()
    assert fake_anthropic.records[-1].body["messages"][0]["content"] == document


def test_split_body_encodes_edits_before_the_clients_bytes() -> None:
    big = ["a" * BULK_BYTES]
    raw = orjson.dumps({"model": "m", "stream": False, "messages": big, "max_tokens": 3})
    body = split(bytearray(raw))
    assert isinstance(body, SplitBody)
    assert dict(body) == {"model": "m", "stream": False, "max_tokens": 3}
    assert list(body.bulk) == ["messages"] and body.first_byte("messages") == ord("[")
    encoded = body.encode({**body, "model": "up", "stream": True})
    assert encoded.size == len(encoded.join())
    assert isinstance(encoded.parts[-2], memoryview)  # the client's bytes, not a copy
    out = orjson.loads(encoded.join())
    assert out == {"model": "up", "stream": True, "max_tokens": 3, "messages": big}
    assert body.get("messages") == big  # decoded on first use


@pytest.mark.parametrize(
    "raw",
    [b"[" + b"1," * BULK_BYTES + b"1]", b'{"messages": [' + b'"a",' * BULK_BYTES + b"}"],
    ids=["not_an_object", "invalid_json"],
)
def test_split_refuses_what_a_whole_decode_refuses(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        split(raw)


async def test_large_body_with_invalid_utf8_is_400(gateway: GatewayFactory) -> None:
    """msgspec does not check UTF-8 inside the strings it skips: the reader does."""
    client = await gateway()
    raw = b'{"model": "sim", "messages": [{"role": "user", "content": "' + b"\xff" * 300_000
    raw += b'"}]}'
    resp = await _post(client, CHAT, raw)
    assert resp.status == 400
    assert "UTF-8" in (await resp.json())["error"]["message"]


async def test_large_body_shape_errors_are_400(gateway: GatewayFactory) -> None:
    client = await gateway()
    filler = "x" * 300_000
    for body, param in (
        ({"model": "sim", "prompt": filler}, "messages"),
        ({"model": "sim", "messages": {"role": "user", "content": filler}}, "messages"),
        ({"model": 7, "messages": [{"role": "user", "content": filler}]}, "model"),
    ):
        resp = await client.post(CHAT, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["param"] == param


# -- the budget ----------------------------------------------------------------------


async def _hold_body(client: TestClient[Any, Any], path: str, length: int) -> asyncio.StreamWriter:
    """A request whose headers promise ``length`` bytes and whose body stops halfway."""
    _, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n")  # fmt: skip
    writer.write(head.encode() + b'{"model": "sim", "messages": [' + b" " * (length // 2))
    await writer.drain()
    return writer


async def test_budget_refuses_in_the_clients_dialect_and_is_given_back_on_disconnect(
    gateway: GatewayFactory,
) -> None:
    client = await gateway(server={"max_body_bytes_in_flight": 100_000, "body_budget_wait_s": 0.2})
    budget = client.server.app[BODY_BUDGET]
    holder = await _hold_body(client, MESSAGES, 80_000)
    turn = {"role": "user", "content": "y" * 30_000}
    body = {"model": "sim", "max_tokens": 5, "messages": [turn]}
    try:
        await _wait(lambda: budget.in_flight == 80_000)
        resp = await client.post(MESSAGES, json=body)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        error = (await resp.json())["error"]
        assert error["type"] == "overloaded_error"
        assert error["message"].startswith("The gateway is reading too many request bodies")
    finally:
        holder.close()  # the client leaves mid-body: aiohttp cancels the read
    await _wait(lambda: budget.in_flight == 0 and budget.leases == 0)
    resp = await client.post(MESSAGES, json=body)
    assert resp.status == 200
    assert budget.in_flight == 0
    metrics = await (await client.get("/metrics")).text()
    assert "sluice_request_body_budget_rejections_total 1.0" in metrics
    assert "sluice_request_body_budget_bytes 100000.0" in metrics


async def test_budget_wait_ends_when_bytes_come_back(gateway: GatewayFactory) -> None:
    client = await gateway(server={"max_body_bytes_in_flight": 100_000, "body_budget_wait_s": 10})
    budget = client.server.app[BODY_BUDGET]
    holder = await _hold_body(client, CHAT, 80_000)
    body = {"model": "sim", "messages": [{"role": "user", "content": "y" * 30_000}]}
    try:
        await _wait(lambda: budget.in_flight == 80_000)
        waiting = asyncio.create_task(client.post(CHAT, json=body))
        await _wait(lambda: budget._waiters)
        assert not waiting.done()
    finally:
        holder.close()
    resp = await waiting
    assert resp.status == 200
    await _wait(lambda: budget.in_flight == 0)


async def test_budget_given_back_when_a_waiter_or_holder_is_cancelled() -> None:
    budget = BodyBudget(1000, wait_s=30)
    entered = asyncio.Event()

    async def hold(n: int) -> None:
        async with budget.lease(n):
            entered.set()
            await asyncio.sleep(3600)

    holder = asyncio.create_task(hold(800))
    await entered.wait()
    waiter = asyncio.create_task(hold(500))
    await _wait(lambda: budget._waiters)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert budget.in_flight == 800 and not budget._waiters
    holder.cancel()
    await asyncio.gather(holder, return_exceptions=True)
    assert budget.in_flight == 0 and budget.leases == 0
    # One body larger than the whole budget is admitted alone, never refused,
    # whether it announced its length or grows as it arrives (chunked).
    async with budget.lease() as lease:
        for total in (600, 1200, 5000):
            await lease.grow(total)
        assert lease.bytes == 5000 == budget.in_flight
    async with budget.lease(5000) as lease:
        assert lease.bytes == 5000
        with pytest.raises(BodyBudgetExhausted):
            async with asyncio.timeout(1):
                budget.wait_s = 0.05
                async with budget.lease(1):
                    pass
    assert budget.in_flight == 0


# -- images through each dialect pair --------------------------------------------------


def _chat_image_body(model: str, data_url: str) -> dict[str, Any]:
    parts = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    return {"model": model, "stream": True, "max_tokens": 5,
            "messages": [{"role": "user", "content": parts}]}  # fmt: skip


def _messages_image_body(model: str, b64: str) -> dict[str, Any]:
    blocks = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    return {"model": model, "stream": True, "max_tokens": 5,
            "messages": [{"role": "user", "content": blocks}]}  # fmt: skip


def _responses_image_body(model: str, data_url: str) -> dict[str, Any]:
    parts = [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": data_url, "detail": "high"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
    ]
    return {"model": model, "stream": True, "store": False,
            "input": [{"role": "user", "content": parts}]}  # fmt: skip


def _as_chat_parts(b64: str, detail: bool = False) -> list[dict[str, Any]]:
    image: dict[str, Any] = {"url": f"data:image/png;base64,{b64}"}
    if detail:
        image["detail"] = "high"
    return [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": image},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]


@pytest.mark.parametrize(
    ("client_dialect", "upstream"),
    [
        ("chat", "openai"),
        ("chat", "anthropic"),
        ("messages", "anthropic"),
        ("messages", "openai"),
        ("responses", "openai"),
        ("responses", "anthropic"),
    ],
)
async def test_image_parts_cross_every_pair(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    image_b64: str,
    client_dialect: str,
    upstream: str,
) -> None:
    client = await gateway(models=[openai_model(fake_openai), anthropic_model(fake_anthropic)])
    model = "up" if upstream == "openai" else "claude"
    data_url = f"data:image/png;base64,{image_b64}"
    path, body = {
        "chat": (CHAT, _chat_image_body(model, data_url)),
        "messages": (MESSAGES, _messages_image_body(model, image_b64)),
        "responses": ("/v1/responses", _responses_image_body(model, data_url)),
    }[client_dialect]
    resp = await _post(client, path, orjson.dumps(body))
    assert resp.status == 200, await resp.text()
    await resp.read()
    fake = fake_openai if upstream == "openai" else fake_anthropic
    content = fake.records[-1].body["messages"][-1]["content"]
    if upstream == "anthropic":
        assert content == _messages_image_body(model, image_b64)["messages"][0]["content"]
    else:
        assert content == _as_chat_parts(image_b64, detail=client_dialect == "responses")


async def test_responses_file_id_image_is_400(gateway: GatewayFactory) -> None:
    client = await gateway()
    part = {"type": "input_image", "file_id": "file-1"}
    body = {"model": "sim", "input": [{"role": "user", "content": [part]}]}
    resp = await client.post("/v1/responses", json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "input[0].content[0]"


def test_usage_estimate_skips_images_and_samples_long_prompts(image_b64: str) -> None:
    """The input estimate (upstreams that report no usage) ran at ~1 s per MB
    on the event loop: image data is not text, and a long prompt is sampled."""
    from gateway.usage_estimate import estimate_input_tokens, estimate_tokens

    text = {"model": "m", "messages": [{"role": "user", "content": "What is in these?"}]}
    with_image = _chat_image_body("m", f"data:image/png;base64,{image_b64}")
    with_image["messages"][0]["content"] = [
        {"type": "text", "text": "What is in these?"},
        *with_image["messages"][0]["content"][1:],
    ]
    assert estimate_input_tokens(with_image) == estimate_input_tokens(text)
    prose = "The gateway relays every event as it arrives, and waits for the client. " * 3000
    full = estimate_tokens(prose)
    sampled = estimate_input_tokens({"messages": [{"role": "user", "content": prose}]})
    assert abs(sampled - full) < 0.05 * full


async def test_large_non_streaming_request_and_a_chunked_body(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    """The split path without ``stream``, and a body without a Content-Length
    (chunked): its lease grows as it arrives, and is given back after."""
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    document = "word " * 300_000
    body = {"model": "claude", "max_tokens": 5, "system": document,
            "messages": [{"role": "user", "content": "summarise"}]}  # fmt: skip
    raw = orjson.dumps(body)

    async def pieces() -> Any:
        for at in range(0, len(raw), 100_000):
            yield raw[at : at + 100_000]

    for data in (io.BytesIO(raw), pieces()):
        resp = await client.post(MESSAGES, data=data, headers={"Content-Type": "application/json"})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["type"] == "message"
        sent = fake_anthropic.records[-1].body
        assert sent["system"] == document and sent["stream"] is False
        assert sent["model"] == "claude-up"
    assert client.server.app[BODY_BUDGET].in_flight == 0


def _segmented(raw: bytes, step: int) -> SplitBody:
    """The reader's path for a large body of known length: chunk by chunk."""
    buf = bytearray(raw)
    seg = Segmenter(buf)
    for end in range(step, len(buf) + step, step):
        seg.feed(min(end, len(buf)))
    return split_segmented(buf, seg)


def _agent(n: int = 40, **extra: Any) -> dict[str, Any]:
    turns = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i} " + "x = 1\n" * 99}
             for i in range(n)]  # fmt: skip
    return {"model": "m", "stream": True, "messages": turns, **extra}


@pytest.mark.parametrize("step", [7, 4096, 65536])
def test_segmented_split_agrees_with_a_whole_decode(step: int) -> None:
    """Messages checked as they arrive: the body as a whole decode reads it,
    or InvalidRequest exactly when a whole decode refuses it."""
    tools = [{"type": "function", "function": {"name": "t", "parameters": {}}}]
    nested = _agent(tools=tools)
    nested["messages"][5]["content"] = [{"role": "x"}, {"role": "y"}]  # a nested element
    valid = [
        orjson.dumps(_agent(tools=tools)),
        json.dumps(_agent(tools=tools)).encode(),  # ", " and ": " (Python's json, httpx)
        orjson.dumps(nested),
        orjson.dumps(_agent(n=3)),
        orjson.dumps({**_agent(), "text": 'a "},{"role": b'}),
    ]
    good = valid[0]
    cut = good.index(b'{"role"', len(good) // 2)
    invalid = [
        good[: cut + 3] + good[cut + 4 :],  # a quote gone mid-way
        good[:-1],  # truncated
        good + b"]",  # trailing bytes
        good.replace(b'"model":"m"', b'"model":"m",', 1),  # the prefix broken
        good[:cut] + b"{}," + good[cut:],  # an element that is valid JSON, in a valid place
        good[:cut] + b"{," + good[cut:],  # and one that is not
    ]
    for raw in valid + invalid:
        try:
            expected: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            expected = None
        try:
            body = _segmented(raw, step)
        except InvalidRequest:
            assert expected is None, raw[:80]
            continue
        assert expected is not None, raw[:80]
        assert body.whole() == expected
        assert orjson.loads(body.encode(dict(body)).join()) == expected


def test_agent_body_keeps_its_checked_messages_as_a_view() -> None:
    raw = orjson.dumps(_agent(n=400))
    body = _segmented(raw, 65536)
    pieces = body.bulk["messages"]
    assert len(pieces) == 3 and isinstance(pieces[1], memoryview)
    assert len(pieces[1]) > 0.9 * len(raw)


async def test_large_agent_body_through_the_segmented_reader(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    body = _agent(n=3500)
    body["model"] = "up"
    raw = orjson.dumps(body)
    assert len(raw) > 2 << 20
    resp = await _post(client, CHAT, raw)
    assert resp.status == 200, await resp.text()
    await resp.read()
    assert fake_openai.records[-1].body["messages"] == body["messages"]
    mid = raw.index(b'{"role"', len(raw) // 2)
    resp = await _post(client, CHAT, raw[: mid + 1] + raw[mid + 2 :])  # a quote gone
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]["message"]
