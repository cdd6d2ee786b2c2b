"""Stored responses, background mode, resume, cancel and delete on ``/v1/responses``,
with the in-memory stream store and with the Redis one (a real redis-server),
in one gateway and across two gateway processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
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


async def test_stored_responses_can_be_retrieved(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(models=[SIM], **store)
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
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(models=[SIM], **store)
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
    gateway: GatewayFactory, fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    n = 40
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(n)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai)], **store)
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
    gateway: GatewayFactory, fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    client = await gateway(models=[openai_model(fake_openai)], **store)
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


async def test_delete_removes_and_other_ids_are_404(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(models=[SIM], **store)
    async with sdk(client) as oa:
        plain = await oa.responses.create(model="sim", input="hi")
        await oa.responses.delete(plain.id)
    assert (await client.get(f"/v1/responses/{plain.id}")).status == 404
    assert (await client.get("/v1/responses/resp_nope")).status == 404
    assert (await client.post("/v1/responses/resp_nope/cancel")).status == 404


async def test_a_detached_generation_stops_at_the_store_bound(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    long = {**SIM, "itl_ms": 0, "output_tokens": 5000}
    client = await gateway(models=[long], store={"stream_max_bytes": 16384}, **_state(store))
    async with sdk(client) as oa:
        queued = await oa.responses.create(model="sim", input="hi", background=True)
    final = await _wait_status(client, queued.id, "failed")
    assert final["error"]["code"] == "stream_too_large"
    events = await _sse_events(client, f"/v1/responses/{queued.id}?stream=true")
    assert events[-1]["type"] == "response.failed"
    assert sum(len(orjson.dumps(e)) for e in events) < 2 * 16384


async def test_a_foreground_stream_whose_client_leaves_is_cancelled_and_stored_so(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    client = await gateway(models=[openai_model(fake_openai)], **store)
    resp = await client.post("/v1/responses", json={"model": "up", "input": "hi", "stream": True})
    first = await resp.content.readuntil(b"\n\n")
    rid = orjson.loads(first.split(b"\ndata: ", 1)[1])["response"]["id"]
    resp.close()
    async with asyncio.timeout(5):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.01)
    stored = await _wait_status(client, rid, "cancelled")
    assert stored["id"] == rid


def _state(store: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in store.items() if k == "state"}


async def test_another_key_cannot_see_a_response(gateway: GatewayFactory) -> None:
    from tests.keyhelp import make_key

    secret_a, key_a = make_key("team-a")
    secret_b, key_b = make_key("team-b")
    client = await gateway(models=[SIM], auth={"keys": [key_a, key_b]})
    mine = {"Authorization": f"Bearer {secret_a}"}
    theirs = {"Authorization": f"Bearer {secret_b}"}
    resp = await client.post("/v1/responses", json={"model": "sim", "input": "hi"}, headers=mine)
    rid = (await resp.json())["id"]
    assert (await client.get(f"/v1/responses/{rid}", headers=mine)).status == 200
    for method, path in (("GET", ""), ("GET", "?stream=true"), ("POST", "/cancel"), ("DELETE", "")):
        other = await client.request(method, f"/v1/responses/{rid}{path}", headers=theirs)
        assert other.status == 404, (method, path)
    assert (await client.get(f"/v1/responses/{rid}", headers=mine)).status == 200


async def test_start_on_one_gateway_resume_and_cancel_on_another(
    tmp_path: Path, redis_server: Any, fake_openai: FakeOpenAI
) -> None:
    from tests.gwproc import GatewayProc, replicas_config

    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(30)] + [sse("[DONE]")], itl_s=0.01
    )
    slow = '[[models]]\nname = "slow"\nprovider = "sim"\nttft_ms = 5\nitl_ms = 200\n'
    config = replicas_config(
        tmp_path / "sluice.toml",
        redis_server.url,
        fake_openai.base_url,
        extra=slow + "output_tokens = 1000\n",
    )
    async with (
        GatewayProc(config, tmp_path, "a") as a,
        GatewayProc(config, tmp_path, "b") as b,
        aiohttp.ClientSession() as session,
    ):
        body = {"model": "up", "input": "hi", "background": True}
        async with session.post(f"{a.url}/v1/responses", json=body) as resp:
            rid = (await resp.json())["id"]
        async with session.get(f"{b.url}/v1/responses/{rid}?stream=true") as resp:
            text = await resp.read()
        events = [orjson.loads(e.split(b"\ndata: ", 1)[1]) for e in text.split(b"\n\n") if e]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert deltas == "".join(f"t{i} " for i in range(30))

        body = {"model": "slow", "input": "hi", "background": True}
        async with session.post(f"{a.url}/v1/responses", json=body) as resp:
            slow = (await resp.json())["id"]
        async with session.post(f"{b.url}/v1/responses/{slow}/cancel") as resp:
            cancelled = await resp.json()
        assert cancelled["status"] == "cancelled", cancelled


async def test_previous_response_id_continues_the_conversation(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    # The fake answers "hi" to non-streaming requests; the third one streams.
    fake_openai.script = Script(events=[sse(chunk("Nice")), sse("[DONE]")])
    client = await gateway(models=[openai_model(fake_openai)], **store)
    async with sdk(client) as oa:
        first = await oa.responses.create(model="up", input="Capital?", instructions="Be brief")
        second = await oa.responses.create(
            model="up", input="Second city?", previous_response_id=first.id
        )
        third = await oa.responses.create(
            model="up", input="Third?", previous_response_id=second.id, stream=True
        )
        events = [e async for e in third]
        missing = await client.post(
            "/v1/responses",
            json={"model": "up", "input": "x", "previous_response_id": "resp_nope"},
        )
    assert second.previous_response_id == first.id
    assert events[-1].response.output_text == "Nice"
    assert missing.status == 404
    assert (await missing.json())["error"]["param"] == "previous_response_id"
    sent = [r.body["messages"] for r in fake_openai.records]
    assert sent[1] == [  # the first instructions are not carried over (as OpenAI does)
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "Second city?"},
    ]
    assert sent[2] == [*sent[1], {"role": "assistant", "content": "hi"},
                       {"role": "user", "content": "Third?"}]  # fmt: skip
