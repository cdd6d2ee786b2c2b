"""`sluice keys new`, safe defaults at start, SIGHUP reload of [auth], and a
secret that appears nowhere the gateway writes."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.__main__ import refusal
from gateway.config import parse_settings
from tests.gwproc import GatewayProc, config_text
from tests.helpers import SIM_FAST
from tests.keyhelp import MSGS, make_key, poll
from tests.rawclient import exchange

SIM = {"name": "sim", "provider": "sim"}


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=30
    )


def test_keys_new_prints_a_secret_and_its_block() -> None:
    out = sluice("keys", "new", "team-a")
    assert out.returncode == 0, out.stderr
    (secret,) = re.findall(r"^  (sk-sluice-[A-Za-z0-9_-]{43})$", out.stderr, re.M)
    assert secret not in out.stdout  # stdout is only the block, to append to a config
    block = out.stdout
    key = tomllib.loads(block)["auth"]["keys"][0]
    assert key["name"] == "team-a"
    assert key["sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    settings = parse_settings({"models": [SIM], **tomllib.loads(block)})
    assert settings.auth.keys[0].name == "team-a"
    again = sluice("keys", "new", "team-a")
    assert secret not in again.stderr  # fresh every time
    bad = sluice("keys", "new", "team a!")
    assert bad.returncode == 2 and "invalid key 'team a!'" in bad.stderr
    assert sluice("keys", "new", "a", "--token-budget", "0").returncode == 2


def test_keys_new_with_limits_is_a_working_block() -> None:
    out = sluice(
        "keys", "new", "team-b", "--models", "sim", "--requests-per-minute", "60",
        "--token-budget", "1000", "--budget-period", "month",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    settings = parse_settings({"models": [SIM], **tomllib.loads(out.stdout)})
    (key,) = settings.auth.keys
    assert (key.models, key.requests_per_minute, key.token_budget, key.budget_period) == (
        ("sim",), 60, 1000, "month",
    )  # fmt: skip
    assert key.tokens_per_minute is None


def test_no_keys_on_a_non_loopback_address_refuses_to_start() -> None:
    out = sluice("--host", "0.0.0.0", "--port", "1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "anonymous = true" in lines[0], out.stderr
    settings = parse_settings({"models": [SIM]})
    assert refusal(settings, "127.0.0.1", 1) is None
    assert refusal(settings, "::1", 1) is None
    assert refusal(settings, "10.1.2.3", 1) is not None
    anonymous = parse_settings({"models": [SIM], "auth": {"anonymous": True}})
    assert refusal(anonymous, "0.0.0.0", 1) is None
    _, key = make_key("team-a")
    assert refusal(parse_settings({"models": [SIM], "auth": {"keys": [key]}}), "0.0.0.0", 1) is None


def test_workers_with_limits_need_redis(tmp_path: Path) -> None:
    _, key = make_key("team-a", requests_per_minute=10)
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([key]))
    out = sluice("--config", str(config), "--workers", "2", "--port", "1")
    assert out.returncode == 2
    assert "redis_url" in out.stderr and "team-a" in out.stderr
    config.write_text(config_text([key], redis_url="redis://127.0.0.1:1/0"))
    settings = parse_settings(tomllib.loads(config.read_text()))
    assert refusal(settings, "127.0.0.1", 2) is None


def test_config_errors_name_the_key() -> None:
    from gateway.config import ConfigError

    _, key = make_key("a", models=["nope"])
    with pytest.raises(ConfigError) as info:
        parse_settings({"models": [SIM], "auth": {"keys": [key, {**key, "sha256": "x"}]}})
    assert info.value.errors == (
        "auth.keys[1].sha256: expected the 64 hex digits of the secret's SHA-256 "
        "(`sluice keys new NAME` prints a secret and its sha256)",
    )
    with pytest.raises(ConfigError) as info:
        parse_settings({"models": [SIM], "auth": {"keys": [key, key]}})
    assert "auth.keys[0].models: 'nope' is not a configured model" in info.value.errors
    assert any(e.startswith("auth.keys[1].name: duplicate key name") for e in info.value.errors)
    with pytest.raises(ConfigError, match=r"auth.keys\[0\].request_per_minute: unknown key; did"):
        parse_settings({"models": [SIM], "auth": {"keys": [{**key, "request_per_minute": 1}]}})


async def _status(session: aiohttp.ClientSession, gw: GatewayProc, secret: str) -> int:
    async with session.get(
        f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}
    ) as resp:
        return resp.status


async def test_sighup_adds_and_revokes_keys(tmp_path: Path) -> None:
    a_secret, a = make_key("team-a")
    b_secret, b = make_key("team-b")
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([a]))
    async with GatewayProc(config, tmp_path, "gw") as gw, aiohttp.ClientSession() as session:
        assert await _status(session, gw, a_secret) == 200
        assert await _status(session, gw, b_secret) == 401

        config.write_text(config_text([a, b]))
        gw.signal(signal.SIGHUP)

        async def b_admitted() -> bool:
            return await _status(session, gw, b_secret) == 200

        await poll(b_admitted)

        config.write_text(config_text([b]))  # revoke team-a
        gw.signal(signal.SIGHUP)

        async def a_refused() -> bool:
            return await _status(session, gw, a_secret) == 401

        await poll(a_refused)
        assert await _status(session, gw, b_secret) == 200

        config.write_text(config_text([b]) + "\n[[auth.keys]]\nname = 'x'\nsha256 = 'bad'\n")
        gw.signal(signal.SIGHUP)

        async def logged_failure() -> bool:
            return "keys_reload_failed" in gw.logs()

        await poll(logged_failure)
        assert await _status(session, gw, b_secret) == 200  # the old keys stay
        assert await _status(session, gw, a_secret) == 401
    assert "auth.keys[1].sha256" in gw.logs()


async def test_the_secret_appears_nowhere(tmp_path: Path) -> None:
    """Traffic of every kind with a known secret; then the whole process
    output (JSON logs, stderr) and /metrics are searched for it."""
    secret, key = make_key("team-a", requests_per_minute=3, models=["sim"])
    near_miss = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([key]))
    async with (
        GatewayProc(config, tmp_path, "gw", "--log-level", "debug") as gw,
        aiohttp.ClientSession() as session,
    ):
        body = {"model": "sim", "messages": MSGS}
        bearer = {"Authorization": f"Bearer {secret}"}
        statuses = []
        for headers, payload in (
            (bearer, body),
            (bearer, {**body, "stream": True}),
            ({"x-api-key": secret}, {**body, "max_tokens": 5}),
            (bearer, {**body, "model": "nope"}),
            (bearer, {"model": "sim"}),  # invalid request
            (bearer, body),  # over the limit
            ({"Authorization": f"Bearer {near_miss}"}, body),
            ({"Authorization": secret}, body),  # no scheme
        ):
            path = "/v1/messages" if "x-api-key" in headers else "/v1/chat/completions"
            async with session.post(gw.url + path, json=payload, headers=headers) as resp:
                text = await resp.text()
                statuses.append(resp.status)
                assert secret not in text and near_miss not in text
                assert secret not in str(resp.headers)
        # Requests aiohttp's parser rejects, whose exception quotes the raw
        # bytes (issue 20 row 6): bare LF line endings, a control character
        # after the key, a bad method, a header line too long.
        rejected = [
            f"POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer {secret}\n"
            "Content-Length: 2\n\n{}",
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}"
            "\x01\r\nContent-Length: 2\r\n\r\n{}",
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {secret}\x7f\r\n\r\n",
            f"G\x01T /v1/models?key={secret} HTTP/1.1\r\n\r\n",
            f"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer {secret}\r\nX: {'a' * 9000}\r\n\r\n",
        ]
        for raw in rejected:
            answer = await exchange("127.0.0.1", gw.port, raw.encode())
            assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
        async with session.get(f"{gw.url}/metrics") as resp:
            metrics = await resp.text()
    assert statuses == [200, 200, 200, 404, 400, 429, 401, 401]
    logs = gw.logs()
    assert '"key":"team-a"' in logs  # the name is there
    for text in (logs, metrics):
        assert secret not in text
        assert near_miss not in text
        assert secret[len("sk-sluice-") :][:16] not in text
    assert 'sluice_key_rejections_total{key="team-a",limit="requests"} 1.0' in metrics
    assert logs.count('"event": "http_request_rejected"') == len(rejected)


def test_reload_keeps_the_old_keys_when_the_new_ones_would_be_unsafe(tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.auth import reload_keys
    from gateway.state import IDENTITY, WORKERS

    _, a = make_key("team-a")
    _, limited = make_key("team-b", requests_per_minute=5)
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([a]))
    app = create_app(parse_settings(tomllib.loads(config.read_text())))
    app[WORKERS] = 2
    names = lambda: sorted(app[IDENTITY].ring.by_name)  # noqa: E731

    config.write_text(config_text([]))  # every key removed, anonymous = false
    assert reload_keys(app, str(config)) is False
    config.write_text(config_text([a, limited]))  # limits, 2 workers, no Redis
    assert reload_keys(app, str(config)) is False
    assert names() == ["team-a"]
    config.write_text(config_text([a, limited], redis_url="redis://127.0.0.1:1/0"))
    assert reload_keys(app, str(config)) is False  # [state] is not reloaded
    config.write_text(config_text([], extra="[auth]\nanonymous = true\n"))
    assert reload_keys(app, str(config)) is True
    assert names() == []


async def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    """With --workers 2 the parent forwards SIGHUP: the new key works on
    whichever worker a fresh connection lands on."""
    _, a = make_key("team-a")
    b_secret, b = make_key("team-b")
    config = tmp_path / "sluice.toml"
    config.write_text(config_text([a]))
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
    async with (
        GatewayProc(config, tmp_path, "gw", "--workers", "2") as gw,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        await poll(lambda: _listening_workers(gw), timeout_s=20)
        config.write_text(config_text([a, b]))
        gw.signal(signal.SIGHUP)
        streak = 0

        async def everywhere() -> bool:
            nonlocal streak
            streak = streak + 1 if await _status(session, gw, b_secret) == 200 else 0
            return streak >= 20

        await poll(everywhere, timeout_s=20)


async def _listening_workers(gw: GatewayProc) -> bool:
    import psutil

    assert gw.proc is not None
    children = psutil.Process(gw.proc.pid).children()
    listening = [
        c for c in children
        if any(conn.status == "LISTEN" and conn.laddr.port == gw.port
               for conn in c.net_connections())
    ]  # fmt: skip
    return len(listening) == 2


async def test_budget_gauges_follow_a_reload(gateway: Any, metrics: Any, tmp_path: Path) -> None:
    """Issue 19 G: after a reload changes a key's token_budget,
    sluice_key_token_budget_tokens (and the remaining tokens) follow the new
    config; a removed key's series go."""
    from gateway.auth import reload_keys
    from tests.keyhelp import oai

    a_secret, a = make_key("team-a", token_budget=1000)
    b_secret, b = make_key("team-b", token_budget=500)
    client = await gateway(models=[SIM_FAST], auth={"keys": [a, b]})

    def value(name: str, key: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"key": key})  # type: ignore[no-any-return]

    for secret in (a_secret, b_secret):
        async with oai(client, secret) as sdk:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    spent_a = 1000 - (value("sluice_key_budget_remaining_tokens", "team-a") or 0)
    assert value("sluice_key_token_budget_tokens", "team-a") == 1000
    assert 0 < spent_a < 1000

    config = tmp_path / "sluice.toml"
    config.write_text(config_text([{**a, "token_budget": 2000}]))  # team-b removed
    assert reload_keys(client.app, str(config)) is True
    assert value("sluice_key_token_budget_tokens", "team-a") == 2000
    assert value("sluice_key_budget_remaining_tokens", "team-a") == 2000 - spent_a
    assert value("sluice_key_token_budget_tokens", "team-b") is None
    assert value("sluice_key_budget_remaining_tokens", "team-b") is None

    config.write_text(config_text([{k: v for k, v in a.items() if k != "token_budget"}]))
    assert reload_keys(client.app, str(config)) is True  # no budget any more
    assert value("sluice_key_token_budget_tokens", "team-a") is None
