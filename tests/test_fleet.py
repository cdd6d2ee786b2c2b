"""A fleet on one machine (:mod:`loadtest.procs.fleet`): Redis, the mock upstream,
three gateway replicas on that Redis, nginx round robin in front with the
shipped ``deploy/nginx/sluice.conf``. One fleet serves the whole module; the
tests that kill or restart a replica bring it back before they end.

Proves: per-key limits hold across replicas; resumable chat streams and
background responses resume on another replica; a replica killed mid-stream
cuts its clients promptly, frees its concurrency slots after the lease TTL,
and the others keep serving; a rolling restart (SIGTERM, drain, start again)
fails no request; a short load run through 1 and 2 replicas completes every
stream; followers of a killed replica's resumable stream end with
producer_lost. Figures print with ``pytest -s``; docs/deploy.md records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.keys import sha256_hex
from loadtest.measure.fleet import measure
from loadtest.mock.scenario import MockScenario
from loadtest.procs.fleet import Fleet, http_status
from tests.keyhelp import away_from_minute_edge, make_key

LEASE_TTL_S = 2.0
PRODUCER_LEASE_S = 1.0
GRACE_S = 15.0
BUDGET = 40
LIMITS: dict[str, dict[str, Any]] = {
    "rpm": {"requests_per_minute": 10},
    "budget": {"token_budget": BUDGET},
    "conc": {"max_concurrent_streams": 1},
    "open": {},
}
CHAT = "/v1/chat/completions"


@dataclass
class Ctx:
    fleet: Fleet
    secrets: dict[str, str]

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[key]}"}


def keys_toml(entries: list[dict[str, Any]]) -> str:
    lines = []
    for entry in entries:
        lines.append("[[auth.keys]]")
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in entry.items()]
        lines.append("")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    secrets, entries = {}, []
    for name, limits in LIMITS.items():
        secrets[name], entry = make_key(name, **limits)
        entries.append(entry)
    # The load generator presents "Bearer loadtest" (loadtest/client/sse.py).
    entries.append({"name": "loadtest", "sha256": sha256_hex("loadtest")})
    fleet = Fleet(
        tmp_path_factory.mktemp("fleet"),
        replicas=3,
        extra_config=f"[store]\nproducer_lease_s = {PRODUCER_LEASE_S}\n\n" + keys_toml(entries),
        lease_ttl_s=LEASE_TTL_S,
        shutdown_grace_s=GRACE_S,
    )
    fleet.start()
    try:
        yield Ctx(fleet, secrets)
    finally:
        fleet.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


def body(prompt: str = "hi", model: str = "mock", stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}


async def metric(session: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """Sum of ``name``'s samples matching ``labels`` on one replica."""
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def chat_requests(session: aiohttp.ClientSession, ctx: Ctx) -> list[float]:
    return [
        await metric(session, r.url, "sluice_requests_total", route=CHAT)
        for r in ctx.fleet.gateways
    ]


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """Complete SSE events of ``raw`` as {"id": int | None, "data": bytes}."""
    out = []
    for block in raw.split(b"\n\n"):
        fields = dict(
            line.split(b": ", 1)
            for line in block.split(b"\n")
            if b": " in line and line[:1] != b":"
        )
        if b"data" in fields:
            ident = fields.get(b"id")
            out.append({"id": int(ident) if ident else None, "data": fields[b"data"]})
    return out


def chat_text(events: list[dict[str, Any]]) -> str:
    text = []
    for e in events:
        if e["data"] == b"[DONE]":
            continue
        payload = orjson.loads(e["data"])
        for choice in payload.get("choices") or ():
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


# --- 1. limits across replicas ----------------------------------------------


async def test_requests_per_minute_hold_across_replicas(
    ctx: Ctx, session: aiohttp.ClientSession
) -> None:
    """requests_per_minute = 10 through the LB: exactly 10 successes in all,
    not 10 per replica (round robin spread them over all three), then 429."""
    await away_from_minute_edge(8.0)
    before = await chat_requests(session, ctx)
    statuses = []
    for _ in range(14):
        async with session.post(
            ctx.fleet.url + CHAT, json=body(model="sim", stream=False), headers=ctx.auth("rpm")
        ) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    after = await chat_requests(session, ctx)
    served = [a - b for a, b in zip(after, before, strict=True)]
    print(f"\nrpm=10 through the LB: statuses {statuses}; requests per replica {served}")
    assert statuses == [200] * 10 + [429] * 4
    assert all(n >= 4 for n in served)


async def test_token_budget_holds_across_replicas(ctx: Ctx, session: aiohttp.ClientSession) -> None:
    """token_budget through the LB: sequential requests are admitted while
    tokens are left, whichever replica counts them, then 429 insufficient_quota."""
    spent, ok, last = 0, 0, None
    for _ in range(20):
        async with session.post(
            ctx.fleet.url + CHAT, json=body(model="sim", stream=False), headers=ctx.auth("budget")
        ) as resp:
            last = await resp.json()
            if resp.status != 200:
                assert resp.status == 429
                break
            ok += 1
            spent += last["usage"]["total_tokens"]
    assert last is not None and last["error"]["code"] == "insufficient_quota"
    per = spent // ok
    print(f"\nbudget {BUDGET}: {ok} requests of {per} tokens admitted, then 429")
    assert ok == math.ceil(BUDGET / per)


# --- 2. resumption on another replica ---------------------------------------

STREAM_PROMPT = "[mock ttft_ms=20 itl_ms=15 tokens=40]"


async def read_events(resp: aiohttp.ClientResponse, until: Any = None) -> list[dict[str, Any]]:
    """Events of ``resp`` until the body ends or ``until(events)`` holds."""
    raw = b""
    async for data in resp.content.iter_any():
        raw += data
        complete = raw[: raw.rfind(b"\n\n") + 2]
        if until is not None and until(sse_events(complete)):
            return sse_events(complete)
    return sse_events(raw)


async def test_resumable_chat_resumes_on_another_replica(
    ctx: Ctx, session: aiohttp.ClientSession
) -> None:
    """Started on replica 1, the client leaves after 5 events; replica 2 (and
    the LB) give the rest from Last-Event-ID: the text equals an
    uninterrupted run's."""
    a, b = ctx.fleet.gateways[0], ctx.fleet.gateways[1]
    headers = {**ctx.auth("open"), "Sluice-Resumable": "true"}
    async with session.post(ctx.fleet.url + CHAT, json=body(STREAM_PROMPT),
                            headers=headers) as whole_resp:  # fmt: skip
        whole = await read_events(whole_resp)
    assert whole[-1]["data"] == b"[DONE]"
    async with session.post(a.url + CHAT, json=body(STREAM_PROMPT), headers=headers) as resp:
        sid = resp.headers["Sluice-Stream-Id"]
        first = await read_events(resp, until=lambda ev: len(ev) >= 5)
    last = first[-1]["id"]
    for base in (b.url, ctx.fleet.url):
        async with session.get(
            f"{base}/v1/streams/{sid}", headers={**ctx.auth("open"), "Last-Event-ID": str(last)}
        ) as resp:
            assert resp.status == 200
            rest = await read_events(resp)
        ids = [e["id"] for e in first + rest]
        assert ids == list(range(1, len(ids) + 1))
        assert rest[-1]["data"] == b"[DONE]"
        assert chat_text(first + rest) == chat_text(whole)
    assert len(chat_text(whole)) > 0


async def _response_events(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], until: Any = None
) -> list[dict[str, Any]]:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        events = await read_events(resp, until)
    return [orjson.loads(e["data"]) for e in events]


def deltas(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e.get("type") == "response.output_text.delta")


async def test_background_response_resumes_on_another_replica(
    ctx: Ctx, session: aiohttp.ClientSession
) -> None:
    """POST /v1/responses background:true on replica 1; read its first events
    from replica 2, the rest (starting_after=N) from replica 3: the text
    equals a plain streamed response's."""
    g = ctx.fleet.gateways
    auth = ctx.auth("open")
    plain = {"model": "mock", "input": STREAM_PROMPT, "stream": True}
    async with session.post(ctx.fleet.url + "/v1/responses", json=plain, headers=auth) as resp:
        reference = deltas([orjson.loads(e["data"]) for e in await read_events(resp)])
    bg = {"model": "mock", "input": STREAM_PROMPT, "background": True}
    async with session.post(g[0].url + "/v1/responses", json=bg, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        rid = (await resp.json())["id"]
    head = await _response_events(
        session, f"{g[1].url}/v1/responses/{rid}?stream=true", auth,
        until=lambda ev: sum(b"output_text.delta" in e["data"] for e in ev) >= 5,
    )  # fmt: skip
    n = head[-1]["sequence_number"]
    tail = await _response_events(
        session, f"{g[2].url}/v1/responses/{rid}?stream=true&starting_after={n}", auth
    )
    seq = [e["sequence_number"] for e in head + tail]
    assert seq == list(range(seq[0], seq[0] + len(seq)))
    assert tail[-1]["type"] == "response.completed"
    assert deltas(head + tail) == reference and reference


# --- 3. a replica killed mid-stream -----------------------------------------


async def _victim(session: aiohttp.ClientSession, ctx: Ctx) -> int:
    """The replica holding the one open chat stream."""
    async with asyncio.timeout(10):
        while True:
            for i, r in enumerate(ctx.fleet.gateways):
                if await metric(session, r.url, "sluice_streams_active", route=CHAT) > 0:
                    return i
            await asyncio.sleep(0.02)


async def test_replica_killed_mid_stream(ctx: Ctx, session: aiohttp.ClientSession) -> None:
    """SIGKILL the replica serving a stream of a max_concurrent_streams = 1
    key: nginx cuts that client's connection (an incomplete response, well
    within 30 s); the key's slot frees itself after the lease TTL; a stream
    on another replica and new requests through the LB are unaffected."""
    fleet = ctx.fleet
    long = body("[mock ttft_ms=20 itl_ms=20 tokens=3000]")
    resp = await session.post(fleet.url + CHAT, json=long, headers=ctx.auth("conc"))
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")
    victim = await _victim(session, ctx)
    other = fleet.gateways[(victim + 1) % len(fleet.gateways)]
    side = await session.post(other.url + CHAT, json=body("[mock itl_ms=20 tokens=100]"),
                              headers=ctx.auth("open"))  # fmt: skip
    assert side.status == 200
    try:
        t0 = time.perf_counter()
        fleet.kill(victim)
        rest, error = b"", None
        async with asyncio.timeout(30):  # generous: never a hang
            try:
                async for data in resp.content.iter_any():
                    rest += data
            except aiohttp.ClientError as exc:
                error = exc
        cut_s = time.perf_counter() - t0
        assert b"[DONE]" not in rest
        assert error is not None  # an incomplete chunked body, not a clean end
        # The dead replica's lease still holds the key's one slot...
        async with session.post(fleet.url + CHAT, json=body(model="sim"),
                                headers=ctx.auth("conc")) as again:  # fmt: skip
            assert again.status == 429
        # ...until it expires (lease_ttl_s); no process has to free it.
        tries = 1
        async with asyncio.timeout(10 * LEASE_TTL_S):
            while True:
                async with session.post(fleet.url + CHAT, json=body(model="sim"),
                                        headers=ctx.auth("conc")) as again:  # fmt: skip
                    tries += 1
                    if again.status == 200:
                        await again.read()
                        break
                    assert again.status == 429
                await asyncio.sleep(0.1)
        freed_s = time.perf_counter() - t0
        statuses = []
        for _ in range(6):  # round robin meets the dead replica: passed to the next
            async with session.post(fleet.url + CHAT, json=body(model="sim"),
                                    headers=ctx.auth("open")) as r:  # fmt: skip
                statuses.append(r.status)
                await r.read()
        side_text = await side.read()
        print(f"\nkill -9: client cut after {cut_s * 1000:.0f} ms ({type(error).__name__}),"
              f" slot free after {freed_s:.2f} s ({tries} tries; lease_ttl_s {LEASE_TTL_S}),"
              f" LB statuses after {statuses}")  # fmt: skip
        assert statuses == [200] * 6
        assert side_text.endswith(b"data: [DONE]\n\n")
        assert freed_s >= LEASE_TTL_S / 3
    finally:
        resp.close()
        side.close()
        await asyncio.to_thread(fleet.restart, victim)


async def test_followers_of_a_killed_producer_end_with_producer_lost(
    ctx: Ctx, session: aiohttp.ClientSession
) -> None:
    """A resumable stream generated on replica 1, followed on replica 2:
    replica 1 is killed; the follower ends with a ``producer_lost`` error
    event within ``[store] producer_lease_s`` plus about a second (never a
    hang), and a client resuming through the LB afterwards is told the same."""
    fleet = ctx.fleet
    a, b = fleet.gateways[0], fleet.gateways[1]
    headers = {**ctx.auth("open"), "Sluice-Resumable": "true"}
    long = body("[mock ttft_ms=20 itl_ms=20 tokens=3000]")
    producer = await session.post(a.url + CHAT, json=long, headers=headers)
    try:
        sid = producer.headers["Sluice-Stream-Id"]
        await read_events(producer, until=lambda ev: len(ev) >= 3)
        resume = {**ctx.auth("open"), "Last-Event-ID": "2"}
        async with session.get(f"{b.url}/v1/streams/{sid}", headers=resume) as follower:
            assert follower.status == 200
            await follower.content.readuntil(b"\n\n")  # following live
            t0 = time.perf_counter()
            fleet.kill(0)
            async with asyncio.timeout(30):
                rest = await read_events(follower)
            lost_s = time.perf_counter() - t0
        error = orjson.loads(rest[-1]["data"])["error"]
        assert error["code"] == "producer_lost", rest[-1]
        async with session.get(f"{fleet.url}/v1/streams/{sid}", headers=resume) as again:
            assert again.status == 200
            last = (await read_events(again))[-1]
        assert orjson.loads(last["data"])["error"]["code"] == "producer_lost"
        print(f"\nproducer killed: follower on another replica got producer_lost after"
              f" {lost_s:.2f} s (producer_lease_s {PRODUCER_LEASE_S})")  # fmt: skip
        assert lost_s < PRODUCER_LEASE_S + 1 + 10
    finally:
        producer.close()
        await asyncio.to_thread(fleet.restart, 0)


# --- 4. rolling restart -----------------------------------------------------


@dataclass
class Traffic:
    ok: int = 0
    failed: int = 0
    errors: list[str] | None = None


async def steady_traffic(ctx: Ctx, stop: asyncio.Event, clients: int, out: Traffic) -> None:
    """``clients`` loops of streaming requests through the LB until ``stop``."""
    out.errors = []
    prompt = body("[mock ttft_ms=20 itl_ms=20 tokens=40]")

    async def loop(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.post(ctx.fleet.url + CHAT, json=prompt,
                                        headers=ctx.auth("open")) as resp:  # fmt: skip
                    data = await resp.read()
                if resp.status == 200 and data.endswith(b"data: [DONE]\n\n"):
                    out.ok += 1
                else:
                    out.failed += 1
                    out.errors.append(f"{resp.status} {data[-200:]!r}")  # type: ignore[union-attr]
            except (aiohttp.ClientError, TimeoutError) as exc:
                out.failed += 1
                out.errors.append(repr(exc))  # type: ignore[union-attr]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(loop(session) for _ in range(clients)))


async def test_rolling_restart_fails_no_request(ctx: Ctx, session: aiohttp.ClientSession) -> None:
    """Streams flow through the LB; SIGTERM replica 1: its open streams
    finish, its listener is gone at once (so /readyz there is refused and
    nginx passes new requests on), it exits 0; started again, it takes
    traffic. Not one request fails."""
    fleet = ctx.fleet
    victim = fleet.gateways[0]
    stop, traffic = asyncio.Event(), Traffic()
    runner = asyncio.create_task(steady_traffic(ctx, stop, 6, traffic))
    try:
        async with asyncio.timeout(10):
            while await metric(session, victim.url, "sluice_streams_active", route=CHAT) < 1:
                await asyncio.sleep(0.02)
        open_at_term = await metric(session, victim.url, "sluice_streams_active", route=CHAT)
        t0 = time.perf_counter()
        fleet.terminate(0)
        async with asyncio.timeout(5):  # the listener closes at once: readyz is refused
            while http_status(victim.url + "/readyz", 0.5) is not None:
                await asyncio.sleep(0.01)
        refused_s = time.perf_counter() - t0
        code = await asyncio.to_thread(fleet.wait_exit, 0, GRACE_S + 15)
        exit_s = time.perf_counter() - t0
        ok_at_exit = traffic.ok
        assert code == 0
        await asyncio.to_thread(fleet.restart, 0)
        restarted_s = time.perf_counter() - t0
        async with asyncio.timeout(30):  # nginx tries it again after fail_timeout
            while await metric(session, victim.url, "sluice_requests_total", route=CHAT) < 3:
                await asyncio.sleep(0.1)
        back_s = time.perf_counter() - t0
    finally:
        stop.set()
        await runner
    print(f"\nrolling restart: {open_at_term:.0f} streams open on the replica at SIGTERM;"
          f" /readyz refused after {refused_s * 1000:.0f} ms; exit 0 after {exit_s:.2f} s;"
          f" restarted at {restarted_s:.2f} s, taking traffic at {back_s:.2f} s;"
          f" {traffic.ok} streams ok ({ok_at_exit} by the exit),"
          f" {traffic.failed} failed")  # fmt: skip
    assert traffic.failed == 0, traffic.errors
    assert traffic.ok > 0


# --- 5. load smoke: 1 vs 2 replicas ------------------------------------------


async def test_load_smoke_one_and_two_replicas(ctx: Ctx) -> None:
    """A few seconds of closed-loop load through nginx with 1, then 2
    replicas in its upstream list (reloaded): every stream completes."""
    fleet = ctx.fleet
    assert fleet.nginx is not None
    scenario = MockScenario(ttft_ms=10, itl_ms=10, tokens=20)
    try:
        for n in (1, 2):
            await asyncio.to_thread(fleet.nginx.reload, [r.port for r in fleet.gateways[:n]])
            figures = await measure(fleet.url, "mock", scenario, concurrency=16, duration_s=2.0)
            print(f"\n{n} replica(s): {figures['streams']} streams,"
                  f" {figures['events_per_s']:.0f} events/s")  # fmt: skip
            assert figures["streams"] > 0
            assert figures["completed"] == figures["streams"], figures["errors"]
    finally:
        with contextlib.suppress(RuntimeError):
            await asyncio.to_thread(fleet.nginx.reload, [r.port for r in fleet.gateways])


def test_fleet_layout(ctx: Ctx) -> None:
    """Every replica's config is the same file content; nginx's list names them."""
    fleet = ctx.fleet
    texts = {Path(r.config).read_text() for r in fleet.gateways}
    assert len(texts) == 1
    assert fleet.nginx is not None
    listed = (fleet.nginx.prefix / "sluice-upstreams.conf").read_text()
    for r in fleet.gateways:
        assert f"127.0.0.1:{r.port}" in listed
