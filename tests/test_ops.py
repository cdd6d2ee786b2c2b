"""Operator endpoints: /readyz reports the state store (Redis), and /metrics
and the readiness detail can be kept from whoever reaches the API port
(issue 20 rows 11 and 12)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.ops import METRICS_ADDRESS
from tests.fakes import FakeOpenAI
from tests.helpers import SIM_FAST, GatewayFactory, openai_model
from tests.keyhelp import make_key, poll
from tests.redis_server import RedisServer


async def _ready(client: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz", headers=headers)
    return resp.status, await resp.json()


async def test_readyz_follows_redis_when_limits_need_it(
    gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    """Limited keys, fail_open off (the default rule): Redis down is 503
    state_unavailable, back up is 200 again; the detail says so."""
    _, key = make_key("team-a", requests_per_minute=100)
    client = await gateway(auth={"keys": [key]}, state={"redis_url": redis_server.url})
    status, body = await _ready(client)
    assert (status, body["status"]) == (200, "ready")
    assert body["state"] == {"redis": "ok", "required": True}
    redis_server.stop()

    async def unready() -> bool:
        return (await _ready(client))[0] == 503

    await poll(unready)
    status, body = await _ready(client)
    assert body["status"] == "state_unavailable"
    assert body["state"] == {"redis": "unavailable", "required": True}
    redis_server.start()

    async def ready() -> bool:
        return (await _ready(client))[0] == 200

    await poll(ready, every_s=0.1)
    assert (await _ready(client))[1]["state"]["redis"] == "ok"


@pytest.mark.parametrize(
    ("keys", "state", "required"),
    [
        ("limited", {"fail_open": True}, False),  # limited keys are served uncounted
        ("plain", {}, False),  # no key counts anything
        ("limited", {"readiness_requires_redis": False}, False),
        ("plain", {"readiness_requires_redis": True}, True),
    ],
)
async def test_readyz_requirement_is_configurable(
    gateway: GatewayFactory,
    redis_server: RedisServer,
    keys: str,
    state: dict[str, Any],
    required: bool,
) -> None:
    _, key = make_key("team-a", **({"requests_per_minute": 100} if keys == "limited" else {}))
    client = await gateway(auth={"keys": [key]}, state={"redis_url": redis_server.url, **state})
    redis_server.stop()
    status, body = await _ready(client)
    assert body["state"] == {"redis": "unavailable", "required": required}
    assert status == (503 if required else 200)


async def test_readyz_says_busy_not_down_when_the_pool_is_exhausted(
    gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    from gateway.state import REDIS

    _, key = make_key("team-a", requests_per_minute=100)
    client = await gateway(
        auth={"keys": [key]},
        state={"redis_url": redis_server.url, "max_connections": 2, "pool_timeout_s": 0.1},
    )
    pool = client.app[REDIS].connection_pool
    held = [await pool.get_connection(), await pool.get_connection()]
    try:
        status, body = await _ready(client)
    finally:
        for conn in held:
            await pool.release(conn)
    assert (status, body["state"]["redis"]) == (200, "busy")


async def test_metrics_on_their_own_listener(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[server] metrics_port: the API port has no /metrics and a /readyz
    without detail (no model names, no variable names); the metrics listener
    has /metrics, /readyz with its detail and /healthz."""
    monkeypatch.delenv("OPENAI_API_KEY")
    _, key = make_key("team-a", requests_per_minute=100)
    client = await gateway(
        models=[SIM_FAST, openai_model(fake_openai)],
        server={"metrics_port": 0},
        auth={"keys": [key]},
    )
    assert (await client.get("/metrics")).status == 404
    status, body = await _ready(client)
    assert (status, body) == (200, {"status": "ready"})
    host, port = client.app[METRICS_ADDRESS]
    base = f"http://{host}:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert "sluice_build_info" in await resp.text()
        async with session.get(f"{base}/readyz") as resp:
            assert resp.status == 200
            detail = await resp.json()
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
    assert detail["unconfigured_models"] == [{"model": "up", "missing_env": "OPENAI_API_KEY"}]
    assert detail["open_streams"] == 0


async def test_metrics_and_detail_behind_a_token(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_METRICS_TOKEN", "s3cret-metrics-token")
    monkeypatch.delenv("OPENAI_API_KEY")
    client = await gateway(
        models=[SIM_FAST, openai_model(fake_openai)],
        server={"metrics_token_env": "SLUICE_METRICS_TOKEN"},
    )
    good = {"Authorization": "Bearer s3cret-metrics-token"}
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "s3cret-metrics-token"},
    ):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert "sluice_" not in await resp.text()
        assert await _ready(client, **headers) == (200, {"status": "ready"})
    resp = await client.get("/metrics", headers=good)
    assert resp.status == 200 and "sluice_build_info" in await resp.text()
    status, body = await _ready(client, **good)
    assert status == 200
    assert body["unconfigured_models"] == [{"model": "up", "missing_env": "OPENAI_API_KEY"}]


def test_a_metrics_token_variable_that_is_unset_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never a silent fallback to an open /metrics."""
    from gateway.config import ConfigError, parse_settings

    monkeypatch.setenv("SLUICE_METRICS_TOKEN", "")
    with pytest.raises(ConfigError) as info:
        parse_settings(
            {"models": [SIM_FAST], "server": {"metrics_token_env": "SLUICE_METRICS_TOKEN"}}
        )
    assert info.value.errors == (
        "server.metrics_token_env: the environment variable SLUICE_METRICS_TOKEN is unset or empty",
    )
