"""Stored responses, background mode, resume, cancel and delete on ``/v1/responses``,
with the in-memory stream store."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 2, "output_tokens": 30}


async def _sse_events(client: TestClient[Any, Any], path: str) -> list[dict[str, Any]]:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    text = await resp.read()
    return [orjson.loads(e.split(b"\ndata: ", 1)[1]) for e in text.split(b"\n\n") if e]


async def _wait_status(client: TestClient[Any, Any], rid: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            body = await (await client.get(f"/v1/responses/{rid}")).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.02)


async def test_stored_responses_can_be_retrieved(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        plain = await oa.responses.create(model="sim", input="hi")
        again = await oa.responses.retrieve(plain.id)
        assert again.output_text == plain.output_text and again.status == "completed"
        stream = await oa.responses.create(model="sim", input="hi", stream=True)
        events = [e async for e in stream]
        rid = events[0].response.id
        kept = await oa.responses.retrieve(rid)
        assert kept.output_text == events[-1].response.output_text
        unstored = await oa.responses.create(model="sim", input="hi", store=False)
    resp = await client.get(f"/v1/responses/{unstored.id}")
    assert resp.status == 404


async def test_background_resume_after_every_prefix_gives_exactly_the_rest(
    gateway: GatewayFactory,
) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        queued = await oa.responses.create(model="sim", input="hi", background=True)
    assert queued.status == "queued"
    whole = await _sse_events(client, f"/v1/responses/{queued.id}?stream=true")
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert whole[-1]["type"] == "response.completed"
    for after in (0, 3, len(whole) // 2, len(whole) - 2, len(whole) - 1):
        rest = await _sse_events(
            client, f"/v1/responses/{queued.id}?stream=true&starting_after={after}"
        )
        assert rest == whole[after + 1 :]


async def test_background_stream_dropped_mid_way_resumes_with_nothing_lost(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    n = 40
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(n)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(
        "/v1/responses", json={"model": "up", "input": "hi", "background": True, "stream": True}
    )
    got: list[dict[str, Any]] = []
    buffer = b""
    while len(got) < 8:  # read a few events, then drop the connection
        buffer += await resp.content.readany()
        *complete, buffer = buffer.split(b"\n\n")
        got += [orjson.loads(e.split(b"\ndata: ", 1)[1]) for e in complete if e]
    resp.close()
    rid = got[0]["response"]["id"]
    last = got[-1]["sequence_number"]
    rest = await _sse_events(client, f"/v1/responses/{rid}?stream=true&starting_after={last}")
    joined = got + rest
    assert [e["sequence_number"] for e in joined] == list(range(len(joined)))
    text = "".join(e["delta"] for e in joined if e["type"] == "response.output_text.delta")
    assert text == "".join(f"t{i} " for i in range(n))
    assert fake_openai.records[0].completed  # the client left; the generation did not


async def test_cancel_stops_a_background_response_and_its_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        queued = await oa.responses.create(model="up", input="hi", background=True)
        await _wait_status(client, queued.id, "in_progress")
        cancelled = await oa.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    async with asyncio.timeout(5):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.01)
    events = await _sse_events(client, f"/v1/responses/{queued.id}?stream=true")
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "cancelled"


async def test_delete_removes_and_other_ids_are_404(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        plain = await oa.responses.create(model="sim", input="hi")
        await oa.responses.delete(plain.id)
    assert (await client.get(f"/v1/responses/{plain.id}")).status == 404
    assert (await client.get("/v1/responses/resp_nope")).status == 404
    assert (await client.post("/v1/responses/resp_nope/cancel")).status == 404


async def test_a_detached_generation_stops_at_the_store_bound(gateway: GatewayFactory) -> None:
    long = {**SIM, "itl_ms": 0, "output_tokens": 5000}
    client = await gateway(models=[long], store={"stream_max_bytes": 16384})
    async with sdk(client) as oa:
        queued = await oa.responses.create(model="sim", input="hi", background=True)
    final = await _wait_status(client, queued.id, "failed")
    assert final["error"]["code"] == "stream_too_large"
    events = await _sse_events(client, f"/v1/responses/{queued.id}?stream=true")
    assert events[-1]["type"] == "response.failed"
    assert sum(len(orjson.dumps(e)) for e in events) < 2 * 16384


async def test_a_foreground_stream_whose_client_leaves_is_cancelled_and_stored_so(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post("/v1/responses", json={"model": "up", "input": "hi", "stream": True})
    first = await resp.content.readuntil(b"\n\n")
    rid = orjson.loads(first.split(b"\ndata: ", 1)[1])["response"]["id"]
    resp.close()
    async with asyncio.timeout(5):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.01)
    stored = await _wait_status(client, rid, "in_progress")  # its last snapshot
    assert stored["id"] == rid
