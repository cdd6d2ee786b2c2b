"""Retries and fallbacks before the first token; none after it."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.metrics import Metrics
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk

MSGS: list[Any] = [{"role": "user", "content": "hi"}]
OK = Script(events=[sse(chunk("", role="assistant")), sse(chunk("served")), sse("[DONE]")])


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("stream", [True, False])
async def test_primary_503_is_served_by_the_fallback(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    second_fake: FakeOpenAI,
    metrics: Metrics,
    stream: bool,
) -> None:
    fake_openai.script = Script(status=503)
    second_fake.script = OK
    client = await gateway(
        models=[
            openai_model(fake_openai, fallbacks=["backup"]),
            {**openai_model(second_fake), "name": "backup"},
        ]
    )
    async with sdk(client) as oa:
        if stream:
            response = await oa.chat.completions.create(model="up", messages=MSGS, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in response])
            assert text == "served"
        else:
            completion = await oa.chat.completions.create(model="up", messages=MSGS)
            assert completion.choices[0].message.content == "hi"
    assert len(fake_openai.records) == 1
    assert len(second_fake.records) == 1
    assert (
        _value(metrics, "sluice_upstream_retries_total", provider="openai", reason="fallback") == 1
    )


async def test_retries_with_backoff_honour_retry_after(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics
) -> None:
    fake_openai.queue = [
        Script(status=429, headers={"Retry-After": "0"}),
        Script(status=502),
    ]
    fake_openai.script = OK
    client = await gateway(models=[openai_model(fake_openai, retries=2, retry_backoff_s=0.01)])
    resp = await client.post(
        "/v1/chat/completions", json={"model": "up", "messages": MSGS, "stream": True}
    )
    assert resp.status == 200
    assert '"content":"served"' in await resp.text()
    assert len(fake_openai.records) == 3
    assert _value(metrics, "sluice_upstream_retries_total",
                  provider="openai", reason="rate_limited") == 1  # fmt: skip
    assert _value(metrics, "sluice_upstream_retries_total",
                  provider="openai", reason="upstream_error") == 1  # fmt: skip


async def test_retry_after_beyond_the_cap_is_not_waited_for(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(status=429, headers={"Retry-After": "120"})
    client = await gateway(models=[openai_model(fake_openai, retries=3, retry_max_backoff_s=1)])
    resp = await client.post(
        "/v1/chat/completions", json={"model": "up", "messages": MSGS, "stream": True}
    )
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "120"
    assert len(fake_openai.records) == 1


async def test_client_errors_are_not_retried(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, second_fake: FakeOpenAI
) -> None:
    fake_openai.script = Script(status=400)
    client = await gateway(
        models=[
            openai_model(fake_openai, retries=3, fallbacks=["backup"]),
            {**openai_model(second_fake), "name": "backup"},
        ]
    )
    resp = await client.post("/v1/chat/completions", json={"model": "up", "messages": MSGS})
    assert resp.status == 400
    assert len(fake_openai.records) == 1
    assert second_fake.records == []


async def test_failure_after_first_token_is_an_error_not_a_retry(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, second_fake: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("partial"))], then="close")
    second_fake.script = OK
    client = await gateway(
        models=[
            openai_model(fake_openai, retries=3, fallbacks=["backup"]),
            {**openai_model(second_fake), "name": "backup"},
        ]
    )
    got: list[str] = []
    async with sdk(client) as oa:
        response = await oa.chat.completions.create(model="up", messages=MSGS, stream=True)
        with pytest.raises(openai.APIError):
            async for c in response:
                got.append(c.choices[0].delta.content or "")
    assert got == ["partial"]
    assert len(fake_openai.records) == 1
    assert second_fake.records == []


async def test_fallback_to_the_simulator(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(status=500)
    sim = {"name": "sim", "provider": "sim", "ttft_ms": 1, "itl_ms": 0, "output_tokens": 3}
    client = await gateway(models=[openai_model(fake_openai, fallbacks=["sim"]), sim])
    async with sdk(client) as oa:
        response = await oa.chat.completions.create(model="up", messages=MSGS, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in response if c.choices])
    assert text == "Sluice relays tokens"


async def test_unknown_fallback_is_a_config_error() -> None:
    from gateway.config import ConfigError, parse_settings

    with pytest.raises(ConfigError, match="fallbacks"):
        parse_settings({"models": [{"name": "a", "provider": "sim", "fallbacks": ["zzz"]}]})


@pytest.mark.parametrize("stream", [True, False])
async def test_a_fallback_outside_the_keys_models_is_skipped(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """Issue 20 row 10: a key allowed only the failing model was served (and
    charged) by a fallback it may not use directly."""
    from tests.keyhelp import make_key

    fake_openai.script = Script(status=503)
    sim = {"name": "expensive", "provider": "sim", "ttft_ms": 1, "itl_ms": 0, "output_tokens": 3}
    secret, entry = make_key("cheap-only", models=["up"])
    client = await gateway(
        models=[openai_model(fake_openai, fallbacks=["expensive"]), sim],
        auth={"keys": [entry]},
    )
    auth = {"Authorization": f"Bearer {secret}"}
    direct = await client.post(
        "/v1/chat/completions", json={"model": "expensive", "messages": MSGS}, headers=auth
    )
    assert direct.status == 403
    resp = await client.post(
        "/v1/chat/completions", json={"model": "up", "messages": MSGS, "stream": stream},
        headers=auth,
    )  # fmt: skip
    assert resp.status == 503, await resp.text()  # the primary's own failure, no fallback
    assert len(fake_openai.records) == 1
