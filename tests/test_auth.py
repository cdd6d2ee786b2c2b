"""Client keys through the official SDKs: 401/403/429 as the SDKs' typed
exceptions, in each dialect, with the rate-limit headers the SDKs read."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta

import anthropic
import openai
import pytest

from gateway.metrics import Metrics
from tests.conftest import LogLines
from tests.helpers import SIM_FAST, GatewayFactory
from tests.keyhelp import MSGS, ant, away_from_minute_edge, make_key, oai

SIM2 = {**SIM_FAST, "name": "sim2"}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_no_unknown_or_expired_key_is_401_in_both_dialects(
    gateway: GatewayFactory, metrics: Metrics, log_lines: LogLines
) -> None:
    secret, key = make_key("team-a")
    old_secret, old = make_key("old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    client = await gateway(auth={"keys": [key, old]})

    resp = await client.post("/v1/chat/completions", json={"model": "sim", "messages": MSGS})
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"

    for bad, reason in (("sk-sluice-wrong", "unknown"), (old_secret, "expired")):
        async with oai(client, bad) as sdk:
            with pytest.raises(openai.AuthenticationError) as info:
                await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
            assert info.value.code == "invalid_api_key"
        async with ant(client, bad) as asdk:
            with pytest.raises(anthropic.AuthenticationError) as ainfo:
                await asdk.messages.create(model="sim", max_tokens=5, messages=MSGS)  # type: ignore[arg-type]
            assert ainfo.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert sample(metrics, "sluice_auth_failures_total", reason=reason) == 2
    assert sample(metrics, "sluice_auth_failures_total", reason="missing") == 1
    failures = [line for line in log_lines() if line.get("auth_failure")]
    assert [line["auth_failure"] for line in failures] == ["missing"] + ["unknown"] * 2 + [
        "expired"
    ] * 2
    assert [line.get("key") for line in failures if line["auth_failure"] == "expired"] == [
        "old",
        "old",
    ]

    async with oai(client, secret) as sdk:
        done = await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert done.choices[0].message.content
    async with ant(client, secret) as asdk:  # x-api-key
        msg = await asdk.messages.create(model="sim", max_tokens=5, messages=MSGS)  # type: ignore[arg-type]
    assert msg.content


async def test_health_and_metrics_stay_open(gateway: GatewayFactory) -> None:
    _, key = make_key("team-a")
    client = await gateway(auth={"keys": [key]})
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/v1/models")).status == 401


async def test_anonymous_serves_keyless_requests_but_not_wrong_keys(
    gateway: GatewayFactory,
) -> None:
    _, key = make_key("team-a")
    client = await gateway(auth={"anonymous": True, "keys": [key]})
    ok = await client.post("/v1/chat/completions", json={"model": "sim", "messages": MSGS})
    assert ok.status == 200
    async with oai(client, "sk-sluice-wrong") as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()


async def test_model_allow_list_is_403_and_filters_models(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    secret, key = make_key("team-a", models=["sim"])
    client = await gateway(models=[SIM_FAST, SIM2], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await sdk.chat.completions.create(model="sim2", messages=MSGS)  # type: ignore[arg-type]
        assert info.value.body["type"] == "permission_error"  # type: ignore[index]
        assert [m.id for m in (await sdk.models.list()).data] == ["sim"]
        assert (await sdk.models.retrieve("sim")).id == "sim"
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("sim2")
    async with ant(client, secret) as asdk:
        with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
            await asdk.messages.create(model="sim2", max_tokens=5, messages=MSGS)  # type: ignore[arg-type]
        assert ainfo.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert [m.id for m in (await asdk.models.list()).data] == ["sim"]
    assert sample(metrics, "sluice_key_rejections_total", key="team-a", limit="model") == 2


async def test_requests_per_minute_429_with_headers(
    gateway: GatewayFactory, metrics: Metrics, log_lines: LogLines
) -> None:
    secret, key = make_key("team-a", requests_per_minute=2, tokens_per_minute=100000)
    client = await gateway(auth={"keys": [key]})
    await away_from_minute_edge()
    async with oai(client, secret) as sdk:
        remaining = []
        for _ in range(2):
            raw = await sdk.chat.completions.with_raw_response.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
            h = raw.headers
            assert h["x-ratelimit-limit-requests"] == "2"
            assert h["x-ratelimit-limit-tokens"] == "100000"
            assert re.fullmatch(r"\d+s", h["x-ratelimit-reset-requests"])
            assert re.fullmatch(r"\d+s", h["x-ratelimit-reset-tokens"])
            remaining.append(h["x-ratelimit-remaining-requests"])
        assert remaining == ["1", "0"]
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    err = info.value
    assert err.code == "rate_limit_exceeded"
    retry_after = int(err.response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert abs(retry_after - (60 - time.time() % 60)) <= 2
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert sample(metrics, "sluice_key_rejections_total", key="team-a", limit="requests") == 1
    summaries = [line for line in log_lines() if line["event"] == "request"]
    assert len(summaries) == 3
    assert all(line["key"] == "team-a" for line in summaries)


async def test_anthropic_headers_on_messages_and_streams(gateway: GatewayFactory) -> None:
    secret, key = make_key("team-a", requests_per_minute=50, tokens_per_minute=1000)
    client = await gateway(auth={"keys": [key]})
    await away_from_minute_edge()
    async with ant(client, secret) as asdk:
        raw = await asdk.messages.with_raw_response.create(
            model="sim",
            max_tokens=5,
            messages=MSGS,  # type: ignore[arg-type]
        )
        h = raw.headers
        assert h["anthropic-ratelimit-requests-limit"] == "50"
        assert h["anthropic-ratelimit-requests-remaining"] == "49"
        assert h["anthropic-ratelimit-tokens-limit"] == "1000"
        reset = datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"])
        assert reset.second == 0 and 0 < (reset - datetime.now(UTC)).total_seconds() <= 60
        assert "x-ratelimit-limit-requests" not in h
        used = (await raw.parse()).usage
        async with asdk.messages.with_streaming_response.create(
            model="sim",
            max_tokens=5,
            messages=MSGS,
            stream=True,  # type: ignore[arg-type]
        ) as stream:
            assert stream.headers["anthropic-ratelimit-requests-remaining"] == "48"
            spent = used.input_tokens + used.output_tokens
            assert stream.headers["anthropic-ratelimit-tokens-remaining"] == str(1000 - spent)
            await stream.read()
    async with oai(client, secret) as sdk:
        async with sdk.chat.completions.with_streaming_response.create(
            model="sim",
            messages=MSGS,
            stream=True,  # type: ignore[arg-type]
        ) as ostream:
            assert ostream.headers["x-ratelimit-remaining-requests"] == "47"
            assert "anthropic-ratelimit-requests-limit" not in ostream.headers
            await ostream.read()
        raw_models = await sdk.models.with_raw_response.list()
        assert raw_models.headers["x-ratelimit-remaining-requests"] == "47"  # not counted
        with pytest.raises(openai.NotFoundError) as info:
            await sdk.chat.completions.create(model="nope", messages=MSGS)  # type: ignore[arg-type]
        assert info.value.response.headers["x-ratelimit-remaining-requests"] == "47"


async def test_tokens_per_minute_429(gateway: GatewayFactory, metrics: Metrics) -> None:
    secret, key = make_key("team-a", tokens_per_minute=10)
    client = await gateway(auth={"keys": [key]})
    await away_from_minute_edge()
    async with oai(client, secret) as sdk:
        done = await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
        assert done.usage is not None and done.usage.total_tokens > 0
        if done.usage.total_tokens < 10:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert sample(metrics, "sluice_key_rejections_total", key="team-a", limit="tokens") == 1


async def test_token_budget_429_insufficient_quota_until_next_period(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    secret, key = make_key("team-a", token_budget=5, budget_period="month")
    client = await gateway(auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        done = await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
        assert done.usage is not None
        spent = done.usage.total_tokens
        assert sample(metrics, "sluice_key_budget_remaining_tokens", key="team-a") == max(
            0, 5 - spent
        )
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert info.value.code == "insufficient_quota"
    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    expected = math.ceil((next_month - now).total_seconds())
    assert abs(int(info.value.response.headers["Retry-After"]) - expected) <= 2
    assert sample(metrics, "sluice_key_rejections_total", key="team-a", limit="budget") == 1
    tokens = sum(
        sample(metrics, "sluice_key_tokens_total", key="team-a", model="sim", type=t)
        for t in ("input", "output")
    )
    assert tokens == spent
    async with ant(client, secret) as asdk:
        with pytest.raises(anthropic.RateLimitError) as ainfo:
            await asdk.messages.create(model="sim", max_tokens=5, messages=MSGS)  # type: ignore[arg-type]
    assert ainfo.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_key_sees_itself(gateway: GatewayFactory) -> None:
    secret, key = make_key(
        "team-a", models=["sim"], requests_per_minute=10, token_budget=1000,
        max_concurrent_streams=3, expires_at=datetime(2099, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    plain_secret, plain = make_key("plain")
    client = await gateway(auth={"keys": [key, plain]})
    await away_from_minute_edge()
    async with oai(client, secret) as sdk:
        done = await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert done.usage is not None
    resp = await client.get("/v1/sluice/key", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 200
    me = await resp.json()
    assert me["name"] == "team-a" and me["models"] == ["sim"]
    assert me["expires_at"] == "2099-01-01T00:00:00Z"
    assert me["limits"]["requests_per_minute"] == 10
    assert me["usage"]["minute"] == {
        "requests": 1, "tokens": done.usage.total_tokens,
        "resets_at": me["usage"]["minute"]["resets_at"],
    }  # fmt: skip
    assert me["usage"]["period"]["tokens"] == done.usage.total_tokens
    assert me["usage"]["period"]["remaining"] == 1000 - done.usage.total_tokens
    assert me["usage"]["open_requests"] == 0
    assert secret not in await resp.text() and key["sha256"] not in await resp.text()
    resp = await client.get("/v1/sluice/key", headers={"x-api-key": plain_secret})
    assert (await resp.json())["usage"] is None
