"""A model with ``responses_api = "native"``: ``/v1/responses`` relayed to the
upstream's own ``/responses``, byte for byte, however its bytes are split."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.helpers import GatewayFactory, sdk

RESPONSE = {"id": "resp_up", "object": "response", "created_at": 1, "status": "in_progress",
            "model": "up-model", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "vendor_field": {"nested": [1, 2]}}  # fmt: skip


def _events() -> list[tuple[str, dict[str, Any]]]:
    done = {**RESPONSE, "status": "completed", "usage": {"input_tokens": 3, "output_tokens": 2,
            "total_tokens": 5}, "output": [{"id": "msg_1", "type": "message", "status":
            "completed", "role": "assistant", "content": [{"type": "output_text",
            "text": "héllo 🎉", "annotations": []}]}]}  # fmt: skip
    return [
        ("response.created", {"response": RESPONSE}),
        ("response.in_progress", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": {"id": "msg_1",
         "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ("response.content_part.added", {"item_id": "msg_1", "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ("response.vendor_extension", {"anything": "goes"}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "héllo "}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "🎉"}),
        ("response.completed", {"response": done}),
    ]  # fmt: skip


def _wire(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    out = b""
    for seq, (kind, fields) in enumerate(events):
        data = orjson.dumps({"type": kind, "sequence_number": seq, **fields})
        out += b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
    return out


class NativeUpstream:
    def __init__(self) -> None:
        self.wire = _wire(_events())
        self.piece = 4096
        self.cut = False
        self.bodies: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/responses", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if not body.get("stream"):
            return web.json_response({**RESPONSE, "status": "completed"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        wire = self.wire[: len(self.wire) // 2] if self.cut else self.wire
        for i in range(0, len(wire), self.piece):
            await resp.write(wire[i : i + self.piece])
            await asyncio.sleep(0.001)  # each piece its own read
        if self.cut:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp


@pytest.fixture
async def native(aiohttp_server: Any) -> tuple[NativeUpstream, dict[str, Any]]:
    upstream = NativeUpstream()
    server = await aiohttp_server(upstream.app)
    model = {"name": "up", "provider": "openai", "upstream_model": "up-model",
             "base_url": str(server.make_url("/v1")), "responses_api": "native"}  # fmt: skip
    return upstream, model


@pytest.mark.parametrize("piece", [1, 3, 7, 4096], ids=lambda n: f"{n}-byte-reads")
async def test_byte_faithful_across_split_reads(
    gateway: GatewayFactory, native: tuple[NativeUpstream, dict[str, Any]], piece: int
) -> None:
    upstream, model = native
    upstream.piece = piece
    client = await gateway(models=[model])
    body = {"model": "up", "input": "hi", "stream": True, "reasoning": {"effort": "low"}}
    resp = await client.post("/v1/responses", json=body)
    assert resp.status == 200
    assert await resp.read() == upstream.wire
    sent = upstream.bodies[-1]
    assert sent["model"] == "up-model" and sent["reasoning"] == {"effort": "low"}


async def test_sdk_and_non_streaming(
    gateway: GatewayFactory, native: tuple[NativeUpstream, dict[str, Any]]
) -> None:
    _, model = native
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        async with oa.responses.stream(model="up", input="hi") as stream:
            final = await stream.get_final_response()
        plain = await oa.responses.create(model="up", input="hi")
    assert final.output_text == "héllo 🎉" and final.usage is not None
    assert plain.id == "resp_up" and plain.status == "completed"


async def test_cut_mid_stream_ends_with_response_failed(
    gateway: GatewayFactory, native: tuple[NativeUpstream, dict[str, Any]]
) -> None:
    upstream, model = native
    upstream.cut = True
    client = await gateway(models=[model])
    resp = await client.post("/v1/responses", json={"model": "up", "input": "hi", "stream": True})
    text = await resp.read()
    events = [orjson.loads(e.split(b"\ndata: ", 1)[1]) for e in text.split(b"\n\n") if e]
    assert events[-1]["type"] == "response.failed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["id"] == "resp_up"
