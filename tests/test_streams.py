"""Resumable Chat Completions streams (``Sluice-Resumable: true``) over raw HTTP,
with the memory and the Redis stream store."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.metrics import Metrics
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

URL = "/v1/chat/completions"
BODY = {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 1, "output_tokens": 12}
RESUMABLE = {"Sluice-Resumable": "true"}


def _events(text: bytes) -> list[tuple[int, bytes]]:
    out = []
    for event in text.split(b"\n\n"):
        if not event:
            continue
        head, _, data = event.partition(b"\n")
        assert head.startswith(b"id: "), event
        out.append((int(head[4:]), data))
    return out


async def _resume(client: TestClient[Any, Any], sid: str, last: int) -> list[tuple[int, bytes]]:
    resp = await client.get(f"/v1/streams/{sid}", headers={"Last-Event-ID": str(last)})
    assert resp.status == 200, await resp.text()
    return _events(await resp.read())


async def test_resume_after_every_event_gives_exactly_the_rest(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(models=[SIM], **store)
    resp = await client.post(URL, json=BODY, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    whole = _events(await resp.read())
    assert [n for n, _ in whole] == list(range(1, len(whole) + 1))
    assert whole[-1][1] == b"data: [DONE]"
    for last in range(len(whole) + 1):
        assert await _resume(client, sid, last) == whole[last:]
    by_query = await client.get(f"/v1/streams/{sid}?last_event_id=3")
    assert _events(await by_query.read()) == whole[3:]


async def test_a_client_that_leaves_resumes_with_nothing_lost(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    n = 30
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(n)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai)], **store)
    resp = await client.post(URL, json={**BODY, "model": "up"}, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    got: list[tuple[int, bytes]] = []
    buffer = b""
    while len(got) < 5:
        buffer += await resp.content.readany()
        complete, _, buffer = buffer.rpartition(b"\n\n")
        got += _events(complete + b"\n\n") if complete else []
    resp.close()
    async with asyncio.timeout(10):  # the generation goes on without its client
        while not fake_openai.records[0].completed:
            await asyncio.sleep(0.01)
    rest = await _resume(client, sid, got[-1][0])
    joined = got + rest
    assert [i for i, _ in joined] == list(range(1, len(joined) + 1))
    text = b"".join(d for _, d in joined)
    assert all(f"t{i} ".encode() in text for i in range(n))
    assert joined[-1][1] == b"data: [DONE]"


async def test_two_resumes_at_once_both_get_the_rest(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    client = await gateway(models=[{**SIM, "itl_ms": 5, "output_tokens": 40}], **store)
    resp = await client.post(URL, json=BODY, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    first = await resp.content.readuntil(b"\n\n")
    resp.close()
    a, b = await asyncio.gather(_resume(client, sid, 1), _resume(client, sid, 1))
    assert a == b
    assert [n for n, _ in a] == list(range(2, len(a) + 2))
    assert a[-1][1] == b"data: [DONE]"
    assert first.startswith(b"id: 1\n")


async def test_another_key_gets_404_and_delete_cancels(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    from tests.keyhelp import make_key

    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    mine_secret, mine = make_key("mine")
    other_secret, other = make_key("other")
    client = await gateway(models=[openai_model(fake_openai)], auth={"keys": [mine, other]})
    me = {"Authorization": f"Bearer {mine_secret}", **RESUMABLE}
    them = {"Authorization": f"Bearer {other_secret}"}
    resp = await client.post(URL, json={**BODY, "model": "up"}, headers=me)
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.content.readuntil(b"\n\n")
    resp.close()
    assert (await client.get(f"/v1/streams/{sid}", headers=them)).status == 404
    assert (await client.delete(f"/v1/streams/{sid}", headers=them)).status == 404
    deleted = await client.delete(f"/v1/streams/{sid}", headers=me)
    assert (await deleted.json())["deleted"] is True
    async with asyncio.timeout(5):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.01)
    assert (await client.get(f"/v1/streams/{sid}", headers=me)).status == 404


async def test_byte_bound_and_ttl(gateway: GatewayFactory, store: dict[str, Any]) -> None:
    endless = {**SIM, "itl_ms": 0, "output_tokens": 100_000}
    client = await gateway(
        models=[endless, {**SIM, "name": "short"}],
        store={"stream_max_bytes": 8192, "resume_ttl_s": 0.3},
        **store,
    )
    resp = await client.post(URL, json=BODY, headers=RESUMABLE)
    events = _events(await resp.read())
    assert b'"code":"stream_too_large"' in events[-1][1]
    assert sum(len(d) for _, d in events) < 3 * 8192
    resp = await client.post(URL, json={**BODY, "model": "short"}, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.read()
    async with asyncio.timeout(10):  # gone once resume_ttl_s has passed
        while (await client.get(f"/v1/streams/{sid}")).status != 404:
            await asyncio.sleep(0.05)


async def test_model_setting_makes_streams_resumable(gateway: GatewayFactory) -> None:
    client = await gateway(models=[{**SIM, "resumable": True}])
    resp = await client.post(URL, json=BODY)
    assert "Sluice-Stream-Id" in resp.headers
    plain = await gateway(models=[SIM])
    assert "Sluice-Stream-Id" not in (await plain.post(URL, json=BODY)).headers


async def test_resumes_replays_and_detached_generations_are_counted(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(20)] + [sse("[DONE]")], itl_s=0.01
    )
    client = await gateway(models=[openai_model(fake_openai), SIM])
    sample = metrics.registry.get_sample_value
    route = {"route": "/v1/streams/{stream_id}"}
    resp = await client.post(URL, json={**BODY, "model": "up"}, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.content.readuntil(b"\n\n")
    assert sample("sluice_detached_streams_active") == 1
    resp.close()
    async with asyncio.timeout(10):  # runs on without its client, then ends
        while sample("sluice_detached_streams_active") != 0:
            await asyncio.sleep(0.01)
    done = {"reason": "completed"}
    assert sample("sluice_detached_stream_terminations_total", done) == 1
    assert sample("sluice_stream_resumes_total", route) is None  # the first reader is no resume
    whole = await _resume(client, sid, 0)
    rest = await _resume(client, sid, 15)
    assert rest == whole[15:]
    assert sample("sluice_stream_resumes_total", route) == 2
    assert sample("sluice_stream_replayed_events_total", route) == len(whole) + len(rest)
    # A cancelled one ends "cancelled".
    fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
    resp = await client.post(URL, json={**BODY, "model": "up"}, headers=RESUMABLE)
    await resp.content.readuntil(b"\n\n")
    await client.delete(f"/v1/streams/{resp.headers['Sluice-Stream-Id']}")
    async with asyncio.timeout(10):
        while sample("sluice_detached_stream_terminations_total", {"reason": "cancelled"}) != 1:
            await asyncio.sleep(0.01)
    assert sample("sluice_detached_streams_active") == 0
