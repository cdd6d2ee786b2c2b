"""Quotas in a real Redis (Debian's redis-server, started per test): atomic
counts shared by gateway processes, budgets that outlive a gateway, leases
that expire, Redis going away and coming back under traffic."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis

from gateway.config_auth import StateSettings
from gateway.metrics import Metrics
from gateway.quota.memory import MemoryQuotaStore
from gateway.quota.redis_store import RedisQuotaStore
from gateway.quota.store import NO_LIMIT, Limits, QuotaStore, Verdict, Windows
from gateway.redisconn import connect
from tests.conftest import LogLines
from tests.gwproc import GatewayProc, config_text
from tests.helpers import GatewayFactory
from tests.keyhelp import MSGS, away_from_minute_edge, make_key, oai, poll
from tests.redis_server import RedisServer

BODY = {"model": "sim", "messages": MSGS}


def store_for(kind: str, redis_server: RedisServer | None) -> QuotaStore:
    if kind == "memory":
        return MemoryQuotaStore()
    assert redis_server is not None
    return RedisQuotaStore(connect(StateSettings(redis_url=redis_server.url)), owns_client=True)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    server = None
    if request.param == "redis":
        server = RedisServer(tmp_path)
        server.start()
    s = store_for(request.param, server)
    yield s
    await s.close()
    if server is not None:
        server.stop()


async def _served(sdk: openai.AsyncOpenAI) -> bool:
    """Whether a request is served now (a Redis that is back serves it)."""
    try:
        return bool((await sdk.chat.completions.create(**BODY)).choices)  # type: ignore[call-overload]
    except openai.InternalServerError:
        return False


async def test_admit_is_atomic_under_concurrency(store: QuotaStore) -> None:
    limits = Limits(requests_per_minute=10)
    w = Windows.at(time.time(), "day")
    decisions = await asyncio.gather(*(store.admit("k", limits, w, None, 0) for _ in range(50)))
    assert sum(d.verdict is Verdict.OK for d in decisions) == 10
    assert {d.verdict for d in decisions} == {Verdict.OK, Verdict.REQUESTS}
    assert (await store.usage("k", w)).requests == 10


async def test_leases_expire_and_settle_frees_them(store: QuotaStore) -> None:
    limits = Limits(max_concurrent=2)
    now = time.time()
    w = Windows.at(now, "day")
    ms = w.now_ms
    assert (await store.admit("k", limits, w, "a", ms + 1000)).verdict is Verdict.OK
    assert (await store.admit("k", limits, w, "b", ms + 60_000)).verdict is Verdict.OK
    assert (await store.admit("k", limits, w, "c", ms + 60_000)).verdict is Verdict.CONCURRENCY
    # Lease "a" belonged to a process that died: once expired, its slot is free.
    later = Windows.at(now + 2, "day")
    assert (await store.admit("k", limits, later, "c", later.now_ms + 60_000)).verdict is Verdict.OK
    usage = await store.settle("k", later, "b", 7)
    assert (usage.open_requests, usage.tokens, usage.period_tokens) == (1, 7, 7)
    await store.renew([("k", "c"), ("k", "gone")], later.now_ms + 120_000)
    much_later = Windows.at(now + 90, "day")
    assert (await store.usage("k", much_later)).open_requests == 1  # "c" renewed


async def test_budget_outlives_the_minute(store: QuotaStore) -> None:
    limits = Limits(token_budget=10, tokens_per_minute=NO_LIMIT)
    w = Windows.at(time.time(), "month")
    assert (await store.admit("k", limits, w, None, 0)).verdict is Verdict.OK
    await store.settle("k", w, None, 12)
    next_minute = Windows.at(w.minute_ends + 1, "month")
    if next_minute.period == w.period:
        decision = await store.admit("k", limits, next_minute, None, 0)
        assert decision.verdict is Verdict.BUDGET
        assert decision.usage.tokens == 0 and decision.usage.period_tokens == 12


async def test_redis_down_is_503_then_recovers(
    gateway: GatewayFactory, redis_server: RedisServer, metrics: Metrics
) -> None:
    secret, key = make_key("team-a", requests_per_minute=1000)
    open_secret, unlimited = make_key("free")
    client = await gateway(auth={"keys": [key, unlimited]}, state={"redis_url": redis_server.url})
    async with oai(client, secret) as sdk, oai(client, open_secret) as free:
        assert (await sdk.chat.completions.create(**BODY)).choices  # type: ignore[call-overload]
        redis_server.stop()
        with pytest.raises(openai.InternalServerError) as info:
            await sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
        assert info.value.status_code == 503
        assert info.value.code == "state_unavailable"
        assert "Traceback" not in info.value.response.text
        # A key without limits is never counted, so Redis does not stop it.
        assert (await free.chat.completions.create(**BODY)).choices  # type: ignore[call-overload]
        resp = await client.post(
            "/v1/messages", json={**BODY, "max_tokens": 5}, headers={"x-api-key": secret}
        )
        assert resp.status == 503
        assert (await resp.json())["error"]["type"] == "api_error"
        redis_server.start()

        await poll(lambda: _served(sdk), every_s=0.1)
    rejected = metrics.registry.get_sample_value(
        "sluice_quota_state_errors_total", {"action": "rejected"}
    )
    assert rejected is not None and rejected >= 2


async def test_hung_redis_is_503_within_the_timeout_then_recovers(
    gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP): each
    request waits at most [state] timeout_s, then 503; SIGCONT: served again."""
    secret, key = make_key("team-a", requests_per_minute=1000)
    client = await gateway(
        auth={"keys": [key]}, state={"redis_url": redis_server.url, "timeout_s": 0.2}
    )
    assert redis_server.proc is not None
    async with oai(client, secret) as sdk:
        assert (await sdk.chat.completions.create(**BODY)).choices  # type: ignore[call-overload]
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(2):
                with pytest.raises(openai.InternalServerError) as info:
                    await sdk.with_options(timeout=10).chat.completions.create(**BODY)  # type: ignore[call-overload]
                assert info.value.code == "state_unavailable"
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)

        await poll(lambda: _served(sdk), every_s=0.1)


async def test_fail_open_serves_uncounted_with_a_warning(
    gateway: GatewayFactory, redis_server: RedisServer, metrics: Metrics, log_lines: LogLines
) -> None:
    secret, key = make_key("team-a", requests_per_minute=1)
    client = await gateway(
        auth={"keys": [key]}, state={"redis_url": redis_server.url, "fail_open": True}
    )
    redis_server.stop()
    async with oai(client, secret) as sdk:
        for _ in range(3):  # over the limit of 1: not counted
            assert (await sdk.chat.completions.create(**BODY)).choices  # type: ignore[call-overload]
    allowed = metrics.registry.get_sample_value(
        "sluice_quota_state_errors_total", {"action": "allowed"}
    )
    assert allowed == 3
    warnings = [line for line in log_lines() if line["event"] == "quota_state_unavailable"]
    assert len(warnings) == 3 and all(w["level"] == "warning" for w in warnings)


async def _chat(session: aiohttp.ClientSession, gw: GatewayProc, secret: str) -> int:
    async with session.post(
        f"{gw.url}/v1/chat/completions",
        json={**BODY, "stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {secret}"},
    ) as resp:
        await resp.read()
        return resp.status


async def _key_view(session: aiohttp.ClientSession, gw: GatewayProc, secret: str) -> Any:
    async with session.get(
        f"{gw.url}/v1/sluice/key", headers={"Authorization": f"Bearer {secret}"}
    ) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_two_gateways_share_one_limit_and_one_budget(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    rate_secret, rate_key = make_key("rate", requests_per_minute=6)
    budget_secret, budget_key = make_key("budget", token_budget=30)
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([rate_key, budget_key], redis_url=redis_server.url))
    async with (
        GatewayProc(config, tmp_path, "a") as a,
        GatewayProc(config, tmp_path, "b") as b,
        aiohttp.ClientSession() as session,
    ):
        await away_from_minute_edge(5)
        statuses = [await _chat(session, gw, rate_secret) for gw in (a, b) * 4]
        assert statuses == [200] * 6 + [429] * 2
        assert (await _key_view(session, b, rate_secret))["usage"]["minute"]["requests"] == 6

        spent = []
        for gw in (a, b, a, b, a, b):
            status = await _chat(session, gw, budget_secret)
            spent.append(status)
            if status == 429:
                break
        # 9 tokens a request (1 in, 8 out): 4 fit under 30 between both, the 5th is refused
        assert spent == [200, 200, 200, 200, 429]
        view_a = await _key_view(session, a, budget_secret)
        assert view_a["usage"]["period"]["tokens"] == 36
        assert view_a == await _key_view(session, b, budget_secret)


async def test_budget_survives_a_gateway_restart(tmp_path: Path, redis_server: RedisServer) -> None:
    secret, key = make_key("team-a", token_budget=20)
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([key], redis_url=redis_server.url))
    async with aiohttp.ClientSession() as session:
        async with GatewayProc(config, tmp_path, "first") as first:
            assert [await _chat(session, first, secret) for _ in range(3)] == [200, 200, 200]
            before = (await _key_view(session, first, secret))["usage"]["period"]
        async with GatewayProc(config, tmp_path, "second") as second:
            assert (await _key_view(session, second, secret))["usage"]["period"] == before
            assert before["tokens"] == 27
            assert await _chat(session, second, secret) == 429


async def test_redis_keys_are_hash_tagged_per_key(redis_server: RedisServer) -> None:
    store = RedisQuotaStore(connect(StateSettings(redis_url=redis_server.url)), owns_client=True)
    w = Windows.at(time.time(), "day")
    await store.admit("team-a", Limits(max_concurrent=1), w, "lease", w.now_ms + 60_000)
    await store.settle("team-a", w, "lease", 3)
    await store.close()
    client = aioredis.Redis.from_url(redis_server.url)
    keys = sorted(k.decode() for k in await client.keys("*"))
    await client.aclose()
    assert keys == [f"sluice:q:{{team-a}}:b:{w.period}", f"sluice:q:{{team-a}}:r:{w.minute}",
                    f"sluice:q:{{team-a}}:t:{w.minute}"]  # fmt: skip


async def test_a_long_stream_keeps_its_slot(
    gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    """Leases are renewed while the request runs: a stream outliving its lease
    several times over still holds the key's one slot."""
    secret, key = make_key("team-a", max_concurrent_streams=1)
    slow = {"name": "sim", "provider": "sim", "ttft_ms": 0, "itl_ms": 50, "output_tokens": 80}
    client = await gateway(
        models=[slow], auth={"keys": [key]},
        state={"redis_url": redis_server.url, "lease_ttl_s": 1},
    )  # fmt: skip
    async with oai(client, secret) as sdk:
        stream = await sdk.chat.completions.create(**BODY, stream=True)  # type: ignore[call-overload]
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 50:  # ~2.5 s in: the first lease (1 s) was renewed
                with pytest.raises(openai.RateLimitError) as info:
                    await sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
                assert info.value.code == "rate_limit_exceeded"
        assert seen > 50
        assert (await sdk.chat.completions.create(**BODY)).choices  # type: ignore[call-overload]


def test_redis_is_not_imported_without_redis_url() -> None:
    """The redis package (~25k objects for the collector to track) loads only
    when [state] redis_url asks for it."""
    code = (
        "import sys, gateway.app, gateway.auth, gateway.api.key\n"
        "from gateway.app import create_app\nfrom gateway.config import default_settings\n"
        "create_app(default_settings())\nassert 'redis' not in sys.modules, 'redis imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


async def test_a_burst_waits_for_a_pooled_connection(
    gateway: GatewayFactory, redis_server: RedisServer, metrics: Metrics
) -> None:
    """Issue 20 row 5: 300 limited requests at once through a pool of 10
    connections all succeed (they wait for a connection, bounded by
    pool_timeout_s); the pool never holds more than 10 connections."""
    secret, key = make_key("team-a", requests_per_minute=100_000)
    client = await gateway(
        auth={"keys": [key]},
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
    connector = aiohttp.TCPConnector(limit=0)  # 300 connections at once
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            url = client.make_url("/v1/chat/completions")
            async with session.post(url, json=BODY, headers=headers) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(300)))
    assert statuses.count(200) == 300, sorted(set(statuses))
    assert (
        metrics.registry.get_sample_value("sluice_quota_state_errors_total", {"action": "rejected"})
        is None
    )
    probe = aioredis.Redis.from_url(redis_server.url)
    try:
        clients = await probe.client_list()
    finally:
        await probe.aclose()
    assert 1 <= sum(c["name"] == "sluice" for c in clients) <= 10


async def test_an_exhausted_pool_is_state_busy_not_redis_down(
    gateway: GatewayFactory, redis_server: RedisServer, metrics: Metrics, log_lines: LogLines
) -> None:
    """Issue 20 row 5: every pooled connection held past pool_timeout_s is 503
    ``state_busy`` with Retry-After, logged and counted as pool exhaustion (not
    as a Redis failure), even with fail_open; once one is free, served."""
    from gateway.state import REDIS

    secret, key = make_key("team-a", requests_per_minute=1000)
    client = await gateway(
        auth={"keys": [key]},
        state={"redis_url": redis_server.url, "max_connections": 2, "pool_timeout_s": 0.2,
               "fail_open": True},
    )  # fmt: skip
    pool = client.app[REDIS].connection_pool
    held = [await pool.get_connection(), await pool.get_connection()]
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        resp = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "state_busy"
        assert resp.headers["Retry-After"] == "1"
        resp = await client.post(
            "/v1/messages", json={**BODY, "max_tokens": 5}, headers={"x-api-key": secret}
        )
        assert resp.status == 503
        assert (await resp.json())["error"]["type"] == "overloaded_error"
    finally:
        for conn in held:
            await pool.release(conn)
    async with oai(client, secret) as sdk:
        assert await _served(sdk)
    assert (
        metrics.registry.get_sample_value("sluice_state_pool_exhausted_total", {"store": "quota"})
        == 2
    )
    for action in ("rejected", "allowed"):
        assert (
            metrics.registry.get_sample_value("sluice_quota_state_errors_total", {"action": action})
            is None
        )
    events = [line["event"] for line in log_lines()]
    assert events.count("state_pool_exhausted") == 2
    assert "quota_state_unavailable" not in events
    requests = [line for line in log_lines() if line["event"] == "request"]
    assert [r.get("error_code") for r in requests[:2]] == ["state_busy", "state_busy"]


async def test_pool_exhaustion_and_redis_down_are_told_apart(redis_server: RedisServer) -> None:
    """redisconn: a pool wait that times out is PoolExhausted (on the shared
    client and on the blocking-reads client built from it, which keeps its
    bounds); a Redis that is gone is a connection error, never PoolExhausted."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gateway.redisconn import PoolExhausted, blocking_reads_client

    state = StateSettings(redis_url=redis_server.url, max_connections=2, pool_timeout_s=0.1)
    client = connect(state)
    blocking = blocking_reads_client(client, 1.0)
    try:
        bpool = blocking.connection_pool
        assert (bpool.max_connections, bpool.timeout) == (2, 0.1)  # type: ignore[attr-defined]
        assert bpool.connection_kwargs["socket_timeout"] == 1.0 + state.timeout_s
        # A blocking read longer than timeout_s is not cut by it.
        assert await blocking.xread({"sluice:test:none": "0-0"}, block=700) == []
        for c in (client, blocking):
            held = [await c.connection_pool.get_connection() for _ in range(2)]
            try:
                with pytest.raises(PoolExhausted):
                    await c.ping()
            finally:
                for conn in held:
                    await c.connection_pool.release(conn)
            assert await c.ping()
        redis_server.stop()
        with pytest.raises(RedisConnectionError) as info:
            await client.ping()
        assert not isinstance(info.value, PoolExhausted)
    finally:
        await blocking.aclose()
        await client.aclose()
