"""A key's budget in US dollars per period (``[[auth.keys]] usd_budget``):
counted in both quota stores beside the token budget, enforced post-paid
(429 ``insufficient_quota`` in the client's dialect once the period's spend
reaches it), with the overrun bound the README states: at most the cost of
the requests in flight when it was crossed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import openai
import pytest

from gateway.metrics import Metrics
from gateway.quota.store import NO_LIMIT, Limits, Verdict, Windows
from tests.helpers import SIM_FAST, GatewayFactory
from tests.keyhelp import MSGS, ant, make_key, oai
from tests.test_auth import sample

PRICE = {"input": 100.0, "output": 1000.0}
"""USD per million tokens."""
COST_MICRO = 1 * 100 + 8 * 1000
"""One fast-simulator request (1 input token, 8 output tokens), micro-dollars."""
SIM_PRICED = {**SIM_FAST, "price": PRICE}


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_stores_count_micro_dollars_and_refuse_past_the_budget(
    kind: str, request: pytest.FixtureRequest
) -> None:
    from tests.test_quota_redis import store_for

    server = request.getfixturevalue("redis_server") if kind == "redis" else None
    store = store_for(kind, server)
    try:
        w = Windows.at(time.time(), "day")
        limits = Limits(usd_budget=10_000, token_budget=NO_LIMIT)
        assert (await store.admit("k", limits, w, None, 0)).verdict is Verdict.OK
        usage = await store.settle("k", w, None, 9, 0, 9_999)
        assert usage.period_usd == 9_999
        assert (await store.admit("k", limits, w, None, 0)).verdict is Verdict.OK
        await store.settle("k", w, None, 9, 9, 8_100, 8_100)
        refused = await store.admit("k", limits, w, None, 0)
        assert refused.verdict is Verdict.USD_BUDGET and refused.usage.period_usd == 18_099
        usage = await store.usage("k", w)
        assert (usage.period_usd, usage.period_estimated_usd) == (18_099, 8_100)
        assert usage.period_tokens == 18  # the token counter is unchanged by the USD one
    finally:
        await store.close()


def test_keys_cli_writes_the_usd_budget(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    from gateway.__main__ import keys_main

    assert keys_main(["new", "team-a", "--usd-budget", "25", "--budget-period", "month"]) == 0
    key = tomllib.loads(capsys.readouterr().out)["auth"]["keys"][0]
    assert (key["usd_budget"], key["budget_period"]) == (25.0, "month")


async def test_a_key_past_its_usd_budget_is_refused_in_both_dialects(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    # $0.01 buys two requests (8,100 micro-dollars each): the second crosses it.
    secret, key = make_key("team-a", usd_budget=0.01)
    client = await gateway(models=[SIM_PRICED], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]
    assert refused.value.code == "insufficient_quota"
    assert "budget" in refused.value.message and "$0.01" in refused.value.message
    assert int(refused.value.response.headers["Retry-After"]) > 0
    async with ant(client, secret) as asdk:
        with pytest.raises(anthropic.RateLimitError) as anthropic_refused:
            await asdk.messages.create(model="sim", max_tokens=8, messages=MSGS)  # type: ignore[arg-type]
    assert anthropic_refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert sample(metrics, "sluice_key_rejections_total", key="team-a", limit="usd_budget") == 2
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    period = me["usage"]["period"]
    assert period["spend_usd"] == pytest.approx(2 * COST_MICRO / 1e6)
    assert period["remaining_usd"] == 0


async def test_the_overrun_is_at_most_the_requests_in_flight(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    # Three requests admitted together while the key has spent nothing: all
    # three are served and charged (post-paid), so the key ends over its
    # budget by less than three requests' cost, then is refused.
    budget_micro = 1_000
    secret, key = make_key("team-a", usd_budget=budget_micro / 1e6, max_concurrent_streams=3)
    slow = {**SIM_PRICED, "ttft_ms": 150}
    client = await gateway(models=[slow], auth={"keys": [key]})
    async with oai(client, secret) as sdk:

        async def one() -> Any:
            return await sdk.chat.completions.create(model="sim", messages=MSGS)  # type: ignore[arg-type]

        served = await asyncio.gather(*(one() for _ in range(3)))
        assert len(served) == 3
        with pytest.raises(openai.RateLimitError) as refused:
            await one()
    assert refused.value.code == "insufficient_quota"
    spent = round(sample(metrics, "sluice_spend_usd_total", key="team-a", model="sim") * 1e6)
    assert spent == 3 * COST_MICRO
    assert budget_micro <= spent < budget_micro + 3 * COST_MICRO
