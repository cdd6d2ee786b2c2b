"""Resumable streams across gateway processes sharing one Redis: a stream
started through one process resumes and is cancelled through another, and a
follower whose producer process was killed ends with ``producer_lost``
(bounded by ``[store] producer_lease_s``) instead of waiting."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.gwproc import GatewayProc
from tests.helpers import GatewayFactory

CHAT = "/v1/chat/completions"
RESUMABLE = {"Sluice-Resumable": "true"}
LEASE_S = 1.0


def _config(tmp_path: Path, redis_url: str, upstream: str) -> Path:
    config = tmp_path / "sluice.toml"
    config.write_text(
        f"""
[state]
redis_url = "{redis_url}"
[store]
producer_lease_s = {LEASE_S}
[[models]]
name = "up"
provider = "openai"
base_url = "{upstream}"
api_key_env = ""
[[models]]
name = "slow"
provider = "sim"
ttft_ms = 5
itl_ms = 100
output_tokens = 1000
"""
    )
    return config


def _events(text: bytes) -> list[bytes]:
    return [e for e in text.split(b"\n\n") if e]


def _body(model: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def test_start_on_one_process_resume_and_delete_on_another(
    tmp_path: Path, redis_server: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(30)] + [sse("[DONE]")], itl_s=0.01
    )
    config = _config(tmp_path, redis_server.url, fake_openai.base_url)
    async with (
        GatewayProc(config, tmp_path, "a") as a,
        GatewayProc(config, tmp_path, "b") as b,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(a.url + CHAT, json=_body("up"), headers=RESUMABLE) as resp:
            sid = resp.headers["Sluice-Stream-Id"]
            first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"id: 1\n")
        async with session.get(f"{b.url}/v1/streams/{sid}", headers={"Last-Event-ID": "1"}) as r:
            rest = _events(await r.read())
        ids = [int(e.split(b"\n", 1)[0][4:]) for e in rest]
        assert ids == list(range(2, len(rest) + 2))
        text = b"".join(e.split(b"\n", 1)[1] for e in [first.strip(), *rest])
        assert all(f"t{i} ".encode() in text for i in range(30))
        assert rest[-1].endswith(b"data: [DONE]")

        fake_openai.script = Script(events=[sse(chunk("a"))], then="hang")
        async with session.post(a.url + CHAT, json=_body("up"), headers=RESUMABLE) as resp:
            sid = resp.headers["Sluice-Stream-Id"]
            await resp.content.readuntil(b"\n\n")
        async with session.delete(f"{b.url}/v1/streams/{sid}") as r:
            assert (await r.json())["deleted"] is True
        async with asyncio.timeout(10):  # the cancel flag reaches A; A closes its upstream
            while fake_openai.records[-1].closed_at is None:
                await asyncio.sleep(0.01)
        async with session.get(f"{a.url}/v1/streams/{sid}") as r:
            assert r.status == 404


async def test_a_killed_producer_ends_its_followers_with_producer_lost(
    tmp_path: Path, redis_server: Any, fake_openai: FakeOpenAI
) -> None:
    config = _config(tmp_path, redis_server.url, fake_openai.base_url)
    async with (
        GatewayProc(config, tmp_path, "b") as b,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
    ):
        a = await GatewayProc(config, tmp_path, "a").start()
        try:
            async with session.post(a.url + CHAT, json=_body("slow"), headers=RESUMABLE) as r:
                sid = r.headers["Sluice-Stream-Id"]
                await r.content.readuntil(b"\n\n")
            background = {"model": "slow", "input": "hi", "background": True}
            async with session.post(f"{a.url}/v1/responses", json=background) as r:
                rid = (await r.json())["id"]

            async def read(url: str, headers: dict[str, str]) -> list[bytes]:
                async with session.get(url, headers=headers) as r:
                    assert r.status == 200
                    first = await r.content.readuntil(b"\n\n")  # following live now
                    a.signal(signal.SIGKILL)
                    return [first, *_events(await r.read())]

            killed = time.monotonic()
            chat = await read(f"{b.url}/v1/streams/{sid}", {"Last-Event-ID": "1"})
            waited = time.monotonic() - killed
        finally:
            assert a.proc is not None
            await a.proc.wait()
        # The chat follower ended with a typed error, after at most the lease
        # and the follower's one-second re-check (plus scheduling slack).
        error = orjson.loads(chat[-1].removeprefix(b"data: "))
        assert error["error"]["code"] == "producer_lost", chat[-1]
        assert waited < LEASE_S + 1 + 10, waited
        # A reader that comes back later is told the same at once.
        async with session.get(f"{b.url}/v1/streams/{sid}", headers={"Last-Event-ID": "2"}) as r:
            again = _events(await r.read())
        assert orjson.loads(again[-1].removeprefix(b"data: "))["error"]["code"] == "producer_lost"
        # The background response's follower ends with response.failed.
        async with session.get(f"{b.url}/v1/responses/{rid}?stream=true") as r:
            events = _events(await r.read())
        last = orjson.loads(events[-1].split(b"data: ", 1)[1])
        assert last["type"] == "response.failed"
        assert last["response"]["error"]["code"] == "producer_lost"
        assert last["sequence_number"] == len(events) - 1
        # The Response object says so too (it stays "in_progress" in the store).
        async with session.get(f"{b.url}/v1/responses/{rid}") as r:
            assert (await r.json())["status"] == "failed"
        # The surviving process serves on.
        async with session.post(b.url + CHAT, json=_body("slow") | {"max_tokens": 3}) as r:
            assert r.status == 200 and (await r.read()).endswith(b"data: [DONE]\n\n")


BURST_SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 20, "output_tokens": 60}


async def test_a_burst_of_followers_waits_for_pooled_connections(
    gateway: GatewayFactory, redis_server: Any
) -> None:
    client = await gateway(
        models=[BURST_SIM],
        state={
            "redis_url": redis_server.url,
            "max_connections": 10,
            "pool_timeout_s": 30,
            # Waits for the pool, not connect or command timeouts on a loop
            # this busy (300 requests arriving at once on one core).
            "timeout_s": 10,
            "connect_timeout_s": 10,
        },
    )
    body = {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post(
        "/v1/chat/completions", json=body, headers={"Sluice-Resumable": "true"}
    )
    sid = resp.headers["Sluice-Stream-Id"]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def follow() -> tuple[int, bool]:
            async with session.get(client.make_url(f"/v1/streams/{sid}")) as r:
                text = await r.text()
                return r.status, text.rstrip().endswith("data: [DONE]")

        results = await asyncio.gather(*(follow() for _ in range(300)))
    await resp.read()
    assert results.count((200, True)) == 300, sorted(set(results))
