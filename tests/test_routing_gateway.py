"""Routing across deployments through the gateway, against real fake
upstreams on loopback: each strategy, cooldown and half-open trial, the
retry on another deployment, the queue (429 in the client's dialect,
heartbeats while queued) and the slot given back on every exit path.
Counts and bounds, never wall-clock thresholds."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout

from gateway.metrics import Metrics
from gateway.routing.build import ROUTERS
from gateway.routing.router import ModelRouter
from tests.conftest import LogLines, start_fake_openai
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory

MSGS: list[Any] = [{"role": "user", "content": "hi"}]
OK = Script(events=[sse(chunk("", role="assistant")), sse(chunk("served")), sse("[DONE]")])
SLOW = Script(
    events=[sse(chunk("", role="assistant")), *[sse(chunk("x")) for _ in range(40)], sse("[DONE]")],
    itl_s=0.05,
)
"""A stream that stays open about 2 s after its first chunk."""


@pytest.fixture
async def fakes(aiohttp_server: Any) -> list[FakeOpenAI]:
    out = [await start_fake_openai(aiohttp_server) for _ in range(3)]
    for fake in out:
        fake.script = OK
    return out


def model(fakes: list[FakeOpenAI], routing: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Model ``m`` with one deployment per fake (``d0``, ``d1``, ...)."""
    weights = extra.pop("weights", [1] * len(fakes))
    limits = extra.pop("limits", [None] * len(fakes))
    deployments = []
    for i, fake in enumerate(fakes):
        d: dict[str, Any] = {"name": f"d{i}", "base_url": fake.base_url, "weight": weights[i]}
        if limits[i] is not None:
            d["max_concurrent_streams"] = limits[i]
        deployments.append(d)
    return {"name": "m", "provider": "openai", "upstream_model": "up-model",
            "routing": routing, "deployments": deployments, **extra}  # fmt: skip


def served(fakes: list[FakeOpenAI]) -> list[int]:
    return [len(f.records) for f in fakes]


def router(client: Any) -> ModelRouter:
    return client.server.app[ROUTERS]["m"]


async def chat(client: Any, *, stream: bool = True, **headers: str) -> tuple[int, str]:
    body = {"model": "m", "messages": MSGS, "stream": stream}
    resp = await client.post("/v1/chat/completions", json=body, headers=headers)
    return resp.status, await resp.text()


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def poll(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


# -- strategies -----------------------------------------------------------------


async def test_weighted_shares_requests_by_weight(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics, log_lines: LogLines
) -> None:
    client = await gateway(models=[model(fakes, {"strategy": "weighted"}, weights=[3, 1, 0.5])])
    results = [await chat(client) for _ in range(9)]
    assert all(status == 200 and '"served"' in text for status, text in results)
    assert served(fakes) == [6, 2, 1]
    assert value(metrics, "sluice_deployment_requests_total", model="m", deployment="d0") == 6
    names = Counter(line.get("deployment") for line in log_lines() if line["event"] == "request")
    assert names == {"d0": 6, "d1": 2, "d2": 1}  # the summary line names who served


async def test_least_busy_spreads_open_streams(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics
) -> None:
    for fake in fakes:
        fake.script = SLOW
    client = await gateway(models=[model(fakes, {"strategy": "least_busy"})])
    responses = []
    for _ in range(6):  # each opened (first chunk read) before the next
        resp = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}
        )
        await resp.content.readline()
        responses.append(resp)
    assert served(fakes) == [2, 2, 2]
    assert [d.open_streams for d in router(client).deployments] == [2, 2, 2]
    assert value(metrics, "sluice_deployment_streams_open", model="m", deployment="d1") == 2
    for resp in responses:
        resp.close()
    await poll(lambda: all(d.open_streams == 0 for d in router(client).deployments))
    assert value(metrics, "sluice_deployment_streams_open", model="m", deployment="d1") == 0


async def test_latency_moves_traffic_off_a_slow_deployment(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics
) -> None:
    slow, fast = fakes[0], fakes[1]
    slow.script = Script(events=OK.events, ttft_s=0.25)
    client = await gateway(models=[model([slow, fast], {"strategy": "latency"})])
    for _ in range(16):
        assert (await chat(client))[0] == 200
    # Both measured first (0 is the unmeasured estimate), then p2c of two
    # always compares both: the slow one wins again only once its estimate
    # decayed below the fast one's (seconds at the default 10 s decay).
    assert 1 <= len(slow.records) <= 2 and len(fast.records) >= 14
    estimate = value(
        metrics, "sluice_deployment_latency_estimate_seconds", model="m", deployment="d0"
    )
    assert estimate >= 0.25
    assert value(metrics, "sluice_deployment_upstream_time_to_first_token_seconds_count",
                 model="m", deployment="d1") >= 14  # fmt: skip


async def test_affinity_keeps_a_session_on_one_deployment(
    gateway: GatewayFactory, fakes: list[FakeOpenAI]
) -> None:
    client = await gateway(models=[model(fakes, {"strategy": "affinity"})])
    for _ in range(5):
        assert (await chat(client, **{"Sluice-Session": "conv-1"}))[0] == 200
    assert sorted(served(fakes)) == [0, 0, 5]
    home = max(range(3), key=lambda i: len(fakes[i].records))
    # The body's ``user`` is a key too; sessions spread over deployments.
    for i in range(30):
        body = {"model": "m", "messages": MSGS, "user": f"user-{i}"}
        assert (await client.post("/v1/chat/completions", json=body)).status == 200
    assert all(len(f.records) > 0 for f in fakes)
    # The home deployment down: the session goes to another (least_busy).
    fakes[home].script = Script(status=500)
    client2 = await gateway(models=[model(fakes, {"strategy": "affinity"}, retries=1)])
    before = served(fakes)
    assert (await chat(client2, **{"Sluice-Session": "conv-1"}))[0] == 200
    after = served(fakes)
    assert after[home] == before[home] + 1 and sum(after) == sum(before) + 2


# -- health ---------------------------------------------------------------------


async def test_failures_cool_a_deployment_down_and_retries_move_to_another(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics
) -> None:
    bad, good = fakes[0], fakes[1]
    bad.script = Script(status=500)
    routing = {"strategy": "weighted", "cooldown_failures": 2, "cooldown_s": 0.5}
    client = await gateway(models=[model([bad, good], routing, retries=1, weights=[1000, 1])])
    for _ in range(8):
        status, text = await chat(client)
        assert status == 200 and '"served"' in text  # never lost: retried on d1
    assert len(bad.records) == 2  # then cooling down: not tried again
    assert value(metrics, "sluice_deployment_failures_total",
                 model="m", deployment="d0", reason="upstream_error") == 2  # fmt: skip
    assert value(metrics, "sluice_deployment_cooldowns_total", model="m", deployment="d0") == 1
    assert value(metrics, "sluice_deployment_cooling_down", model="m", deployment="d0") == 1
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert [d["deployment"] for d in ready["deployments_cooling_down"]] == ["d0"]
    # The cooldown ends: one trial (d0 is the weighted choice), which now succeeds.
    bad.script = OK
    await poll(lambda: router(client).deployments[0].health.available(router(client).clock()))
    assert (await chat(client))[0] == 200
    assert len(bad.records) == 3
    assert value(metrics, "sluice_deployment_cooling_down", model="m", deployment="d0") == 0
    assert "deployments_cooling_down" not in await (await client.get("/readyz")).json()


async def test_without_retries_a_failure_is_not_retried_on_another_deployment(
    gateway: GatewayFactory, fakes: list[FakeOpenAI]
) -> None:
    fakes[0].script = Script(status=502)
    client = await gateway(models=[model(fakes[:2], {"strategy": "weighted"}, weights=[9, 1])])
    status, _ = await chat(client)
    assert status == 502 and served(fakes) == [1, 0, 0]


async def test_retry_after_of_a_429_sets_the_cooldown_and_fallbacks_follow(
    gateway: GatewayFactory, fakes: list[FakeOpenAI]
) -> None:
    fakes[0].script = Script(status=429, headers={"Retry-After": "30"})
    fakes[1].script = OK
    client = await gateway(
        models=[
            model(fakes[:1], {}, fallbacks=["backup"]),
            {"name": "backup", "provider": "openai", "base_url": fakes[1].base_url},
        ]
    )
    assert (await chat(client))[0] == 200  # d0's 429, then the fallback
    assert (await chat(client))[0] == 200  # d0 cools down: straight to the fallback
    assert served(fakes)[:2] == [1, 2]
    (cooling,) = (await (await client.get("/readyz")).json())["deployments_cooling_down"]
    assert cooling["state"] == "cooldown" and 25 < cooling["seconds_left"] <= 30


# -- the queue ------------------------------------------------------------------


async def test_full_deployments_queue_then_429_in_the_clients_dialect(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics
) -> None:
    fake = fakes[0]
    fake.script = Script(events=[sse(chunk("first")), sse(chunk("x")), sse("[DONE]")], itl_s=30)
    routing = {"queue_size": 1, "queue_timeout_s": 30}
    client = await gateway(
        models=[model([fake], routing, limits=[1])],
        stream={"heartbeat_interval_s": 30},
    )
    holder = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}
    )
    assert b"first" in await holder.content.readline()
    queued = asyncio.create_task(chat(client))
    await poll(lambda: value(metrics, "sluice_deployment_queue_length", model="m") == 1)
    # The queue is full: 429 at once, in each dialect, with Retry-After.
    refused = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSGS})
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "deployments_busy"
    anthropic = await client.post(
        "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MSGS}
    )
    assert anthropic.status == 429
    assert (await anthropic.json())["error"]["type"] == "rate_limit_error"
    assert value(metrics, "sluice_deployment_queue_rejections_total",
                 model="m", reason="queue_full") == 2  # fmt: skip
    holder.close()  # the slot is given back: the queued request goes
    fake.script = OK
    status, text = await asyncio.wait_for(queued, 10)
    assert status == 200 and '"served"' in text
    assert value(metrics, "sluice_deployment_queue_wait_seconds_count", model="m") == 1
    await poll(lambda: router(client).deployments[0].open_streams == 0)


async def test_queue_timeout_after_heartbeats_is_an_error_event(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics
) -> None:
    fake = fakes[0]
    fake.script = Script(events=[sse(chunk("first"))], then="hang")
    client = await gateway(
        models=[model([fake], {"queue_timeout_s": 0.3}, limits=[1])],
        stream={"heartbeat_interval_s": 0.05},
    )
    holder = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}
    )
    assert b"first" in await holder.content.readline()
    status, text = await chat(client)
    assert status == 200  # committed by the heartbeats while it waited
    assert ": ping" in text and '"code":"deployments_busy"' in text
    assert value(metrics, "sluice_deployment_queue_rejections_total",
                 model="m", reason="queue_timeout") == 1  # fmt: skip
    holder.close()
    await poll(lambda: router(client).deployments[0].open_streams == 0)


# -- every exit path gives the slot back ---------------------------------------


@pytest.mark.parametrize("where", ["queued", "opening", "streaming"])
async def test_a_client_that_leaves_gives_the_slot_back(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], metrics: Metrics, where: str
) -> None:
    fake = fakes[0]
    fake.script = Script(events=[sse(chunk("first"))], then="hang")
    client = await gateway(models=[model([fake], {"queue_timeout_s": 30}, limits=[1])])
    url = client.make_url("/v1/chat/completions")
    body = {"model": "m", "messages": MSGS, "stream": True}
    r = router(client)
    async with ClientSession(timeout=ClientTimeout(total=30)) as session:
        holder = None
        if where == "queued":
            holder = await session.post(url, json=body)
            assert b"first" in await holder.content.readline()
        else:
            fake.script = Script(ttft_s=3600) if where == "opening" else fake.script
        task = asyncio.create_task(session.post(url, json=body))
        if where == "queued":
            await poll(lambda: len(r.queue) == 1)
        elif where == "opening":
            await poll(lambda: len(fake.records) == 1 and r.deployments[0].open_streams == 1)
        else:
            resp = await task
            assert b"first" in await resp.content.readline()
        task.cancel()
        if where == "streaming":
            resp.close()
        await asyncio.gather(task, return_exceptions=True)
        if holder is not None:
            holder.close()
        await poll(lambda: r.deployments[0].open_streams == 0 and len(r.queue) == 0)
    await poll(lambda: value(metrics, "sluice_deployment_queue_length", model="m") == 0)
    assert value(metrics, "sluice_deployment_streams_open", model="m", deployment="d0") == 0
    assert r.cooling_down() == []  # a client leaving is not the deployment's failure


async def test_non_streaming_requests_are_routed_and_give_the_slot_back(
    gateway: GatewayFactory, fakes: list[FakeOpenAI]
) -> None:
    client = await gateway(models=[model(fakes, {"strategy": "weighted"}, limits=[1, 1, 1])])
    for _ in range(3):
        status, text = await chat(client, stream=False)
        assert status == 200 and '"hi"' in text
    assert served(fakes) == [1, 1, 1]
    assert [d.open_streams for d in router(client).deployments] == [0, 0, 0]


def test_readyz_without_redis_does_not_import_redis() -> None:
    """The sampler of loadtest/measure/routing.py polls /readyz: its first call
    imported redis-py (~1 s on the event loop, every stream stalled) even
    with no Redis configured."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from gateway.app import create_app\n"
        "from gateway.config import default_settings\n"
        "from gateway.ops import redis_state\n"
        "app = create_app(default_settings())\n"
        "assert asyncio.run(redis_state(app)) is None\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"  # after any log lines


async def test_a_deployment_without_its_key_is_left_out(
    gateway: GatewayFactory, fakes: list[FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTING_UNSET_KEY", raising=False)
    keyless = model(fakes[:2], {"strategy": "weighted"}, weights=[9, 1], api_key_env="")
    keyless["deployments"][0]["api_key_env"] = "ROUTING_UNSET_KEY"
    nobody = {**model(fakes[2:], {}), "name": "nokey", "api_key_env": "ROUTING_UNSET_KEY"}
    client = await gateway(models=[keyless, nobody])
    for _ in range(3):
        assert (await chat(client))[0] == 200
    assert served(fakes) == [0, 3, 0]  # d0 (weight 9) has no key: never chosen
    assert [d.name for d in router(client).deployments] == ["d1"]
    body = {"model": "nokey", "messages": MSGS}
    refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "upstream_not_configured"
    ready = await (await client.get("/readyz")).json()
    assert ready["unconfigured_models"] == [{"model": "nokey", "missing_env": "ROUTING_UNSET_KEY"}]


async def test_a_browser_may_send_the_affinity_header(gateway: GatewayFactory) -> None:
    app = "http://app.example.com"
    client = await gateway(server={"cors_origins": [app]}, auth={"keys": []})
    pre = await client.options(
        "/v1/chat/completions",
        headers={"Origin": app, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, sluice-session"},
    )  # fmt: skip
    allowed = {h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
    assert "sluice-session" in allowed
