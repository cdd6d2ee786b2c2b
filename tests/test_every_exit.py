"""Every exit path gives back what a request took (issue 19's systematic test).

For each kind of request, with the memory and the Redis state, the client
leaves at each point of the request's life; afterwards nothing is held: no
admission slot, no key lease (counted in the quota store: in Redis too), no
``streams_active`` or ``detached_streams_active``, no stored stream still
``in_progress``, no task left behind. The points: while the key's limits are
checked (Redis behind a proxy that delays every command), before the
response headers (the upstream's first token is late), after the first
event, and during a replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.metrics import Metrics
from gateway.routing.build import ROUTERS
from gateway.state import ADMISSION, QUOTAS, SETTINGS, STREAM_STORE
from tests.helpers import GatewayFactory
from tests.keyhelp import make_key
from tests.latency_proxy import LatencyProxy

LATE = {"name": "sim", "provider": "sim", "ttft_ms": 300, "itl_ms": 5, "output_tokens": 10}
ROUTED = {**LATE, "name": "sim-routed", "max_concurrent_streams": 1}
"""One deployment (the model itself) with one stream slot: a request holds a
routing lease, which must come back like the rest."""
MSGS = [{"role": "user", "content": "hi"}]

KINDS: dict[str, tuple[str, str, dict[str, Any], dict[str, str]]] = {
    "chat stream": ("POST", "/v1/chat/completions",
                    {"model": "sim", "stream": True, "messages": MSGS}, {}),
    "chat": ("POST", "/v1/chat/completions", {"model": "sim", "messages": MSGS}, {}),
    "messages stream": ("POST", "/v1/messages",
                        {"model": "sim", "stream": True, "max_tokens": 50, "messages": MSGS}, {}),
    "responses stream": ("POST", "/v1/responses", {"model": "sim", "input": "hi", "stream": True},
                         {}),
    "responses stored": ("POST", "/v1/responses", {"model": "sim", "input": "hi"}, {}),
    "responses unstored": ("POST", "/v1/responses",
                           {"model": "sim", "input": "hi", "store": False}, {}),
    "responses background stream": ("POST", "/v1/responses",
                                    {"model": "sim", "input": "hi", "background": True,
                                     "stream": True}, {}),
    "resumable": ("POST", "/v1/chat/completions",
                  {"model": "sim", "stream": True, "messages": MSGS},
                  {"Sluice-Resumable": "true"}),
    "gemini stream": ("POST", "/v1beta/models/sim:streamGenerateContent?alt=sse",
                      {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, {}),
    "routed stream": ("POST", "/v1/chat/completions",
                      {"model": "sim-routed", "stream": True, "messages": MSGS}, {}),
}  # fmt: skip

POINTS = ("admission", "before headers", "after first event")


@pytest.fixture
async def state(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, LatencyProxy | None]]:
    """``store`` (parametrized): ``memory``, or ``redis`` behind a latency proxy."""
    if request.getfixturevalue("store") == "memory":
        yield "memory", None
        return
    server = request.getfixturevalue("redis_server")
    proxy = LatencyProxy(server.port)
    port = await proxy.start()
    yield f"redis://127.0.0.1:{port}/0", proxy
    await proxy.aclose()


async def _gateway(
    gateway: GatewayFactory, state: tuple[str, LatencyProxy | None]
) -> tuple[TestClient[Any, Any], dict[str, str]]:
    secret, entry = make_key("team", max_concurrent_streams=2, requests_per_minute=10_000)
    sections: dict[str, Any] = {"models": [LATE, ROUTED], "auth": {"keys": [entry]}}
    url, _ = state
    if url != "memory":
        sections["state"] = {"redis_url": url, "timeout_s": 5}
    client = await gateway(**sections)
    return client, {"Authorization": f"Bearer {secret}", "x-api-key": secret}


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _active(metrics: Metrics) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        if family.name in ("sluice_streams_active", "sluice_detached_streams_active"):
            total += sum(s.value for s in family.samples)
    return total


async def _nothing_held(client: TestClient[Any, Any], metrics: Metrics, baseline: int) -> None:
    """Poll until everything is given back (generations that outlive their
    client end by themselves: the simulator's 10 tokens)."""
    app = client.server.app
    key = app[SETTINGS].auth.keys[0]
    held: dict[str, object] = {}

    async def clear() -> bool:
        view = await app[QUOTAS].view(key)
        held.update(
            admission=app[ADMISSION].open_streams,
            routed=sum(d.open_streams for r in app[ROUTERS].values() for d in r.deployments)
            + sum(len(r.queue) for r in app[ROUTERS].values()),
            active=_active(metrics),
            leases=view.usage.open_requests if view is not None else 0,
            running=await _running(app[STREAM_STORE]),
            tasks=_tasks() - baseline,
        )
        return (
            held["admission"] == 0
            and held["routed"] == 0
            and held["active"] == 0
            and held["leases"] == 0
            and held["running"] == []
            and int(str(held["tasks"])) <= 0
        )

    try:
        async with asyncio.timeout(10):
            while not await clear():
                await asyncio.sleep(0.05)
    except TimeoutError:
        tasks = [t.get_coro() for t in asyncio.all_tasks()]
        raise AssertionError(f"still held: {held}; tasks: {tasks}") from None


def _tasks() -> int:
    """Tasks of the gateway (the test's Redis proxy opens a pipe per connection)."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if not getattr(t.get_coro(), "__qualname__", "").startswith("LatencyProxy.")
    )


async def _running(store: Any) -> list[str]:
    """Stored streams still ``in_progress`` (or ``queued``)."""
    if hasattr(store, "_entries"):
        ids = list(store._entries)
    else:
        ids = [k.decode()[len("sluice:s:") : -2] for k in await store._redis.keys("sluice:s:*:m")]
    running = []
    for stream_id in ids:
        got = await store.get(stream_id)
        if got is not None and got.status in ("in_progress", "queued"):
            running.append(stream_id)
    return running


@pytest.mark.parametrize(
    ("store", "point"),
    # The memory quota store answers without suspending: no await to cancel at.
    [(s, p) for s in ("memory", "redis") for p in POINTS if (s, p) != ("memory", "admission")],
)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_client_that_leaves_leaves_nothing_held(
    gateway: GatewayFactory,
    metrics: Metrics,
    store: str,
    state: tuple[str, LatencyProxy | None],
    kind: str,
    point: str,
) -> None:
    proxy = state[1]
    client, auth = await _gateway(gateway, state)
    method, path, body, headers = KINDS[kind]
    warm = await client.request(method, path, json=body, headers={**headers, **auth})
    await warm.read()
    await _nothing_held(client, metrics, 10**6)
    baseline = _tasks()
    if proxy is not None and point == "admission":
        proxy.delay_s = 0.3
    request = asyncio.ensure_future(
        client.request(method, path, json=body, headers={**headers, **auth})
    )
    if point == "admission":
        await asyncio.sleep(0.1)  # the quota script is on its way to Redis
    elif point == "before headers":
        await asyncio.sleep(0.1)  # admitted; the first token is 300 ms away
    if point == "after first event":
        resp = await request
        if resp.content_type == "text/event-stream":
            line = await resp.content.readline()
            assert line.strip(), line
        resp.close()
    else:
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    if proxy is not None:
        proxy.delay_s = 0.0
    await _nothing_held(client, metrics, baseline)
    # And the key's slots are really free: two requests at once are served.
    both = await asyncio.gather(
        *(client.post("/v1/chat/completions", json={"model": "sim", "messages": MSGS},
                      headers=auth) for _ in range(2))
    )  # fmt: skip
    assert [r.status for r in both] == [200, 200]


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("api", ["streams", "responses"])
async def test_a_reader_that_leaves_during_replay_leaves_nothing_held(
    gateway: GatewayFactory,
    metrics: Metrics,
    store: str,
    state: tuple[str, LatencyProxy | None],
    api: str,
) -> None:
    client, auth = await _gateway(gateway, state)
    if api == "streams":
        first = await client.post(
            "/v1/chat/completions",
            json={"model": "sim", "stream": True, "messages": MSGS},
            headers={"Sluice-Resumable": "true", **auth},
        )
        path = f"/v1/streams/{first.headers['Sluice-Stream-Id']}"
    else:
        first = await client.post(
            "/v1/responses", json={"model": "sim", "input": "hi", "stream": True}, headers=auth
        )
        rid = (await first.content.readline()).decode()
        text = rid + (await first.content.read()).decode()
        path = "/v1/responses/" + text.split('"id":"', 1)[1].split('"', 1)[0] + "?stream=true"
    await first.read()
    await _nothing_held(client, metrics, 10**6)
    baseline = _tasks()
    # A reader with a tiny receive window stops reading after the first event.
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        resp = await session.get(client.make_url(path), headers=auth)
        assert resp.status == 200
        await resp.content.readline()
        resp.close()
    await _nothing_held(client, metrics, baseline)
