"""Cost in US dollars (gateway/cost): prices resolved once per model (config,
else genai-prices for a public API, else nothing), the arithmetic, and the
spend of every request (streamed, not streamed, cut short, estimated) in
``sluice_spend_usd_total``, the summary log line and /v1/sluice/key."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import AnthropicModel, AzureModel, OpenAIModel, SimModel
from gateway.cost.prices import Price, PriceBook, Rate, Source, pico_per_token, price_of
from gateway.cost.spend import Spend
from gateway.dialects.anthropic import usage_of as anthropic_usage_of
from gateway.dialects.openai import usage_of as openai_usage_of
from gateway.metrics import Metrics
from gateway.usage_estimate import estimate_input_tokens, estimate_tokens
from tests.conftest import LogLines
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import SIM_FAST, GatewayFactory, openai_model
from tests.keyhelp import MSGS, make_key, oai, poll
from tests.test_auth import sample

PRICE = {"input": 100.0, "output": 1000.0}
"""USD per million tokens: 100 micro-dollars an input token, 1,000 an output token."""
SIM_PRICED = {**SIM_FAST, "price": PRICE}
SIM_COST_USD = (1 * 100 + 8 * 1000) / 1e6
"""The fast simulator's request: 1 input token, 8 output tokens."""


# -- prices ------------------------------------------------------------------


def test_public_models_are_priced_by_the_library() -> None:
    dated = "gpt-4o-mini-2024-07-18"
    mini = price_of(OpenAIModel(name="m", provider="openai", upstream_model=dated))
    assert mini.source is Source.LIBRARY and mini.ref.startswith("openai/gpt-4o-mini ")
    assert (mini.input, mini.output, mini.cached_input) == (
        Rate(pico_per_token(0.15)), Rate(pico_per_token(0.6)), Rate(pico_per_token(0.075))
    )  # fmt: skip
    claude = price_of(AnthropicModel(name="claude-sonnet-4-5", provider="anthropic"))
    assert claude.source is Source.LIBRARY and claude.input.tiers  # more past 200k input tokens
    assert claude.input.at(250_000) > claude.input.at(1000)
    groq = price_of(
        OpenAIModel(name="g", provider="openai", upstream_model="llama-3.1-8b-instant",
                    base_url="https://api.groq.com/openai/v1")
    )  # fmt: skip
    assert groq.source is Source.LIBRARY and groq.ref.startswith("groq/")


def test_other_provider_kinds_are_priced_by_their_api_not_their_url() -> None:
    """Azure's endpoint is a custom host, but its prices are the library's
    ``azure`` provider's; a deployment name the library does not know costs 0
    with the reason (it raised KeyError at start-up before)."""
    endpoint = "https://contoso.openai.azure.com"
    known = price_of(
        AzureModel(name="a", provider="azure", base_url=endpoint, deployment="gpt-4o-mini")
    )
    assert known.source is Source.LIBRARY and known.ref.startswith("azure/")
    unknown = price_of(
        AzureModel(name="b", provider="azure", base_url=endpoint, deployment="prod-east-7")
    )
    assert unknown.source is Source.NONE and "genai-prices" in unknown.ref


def test_config_wins_self_hosted_and_unknown_are_free(log_lines: LogLines) -> None:
    configured = price_of(
        OpenAIModel(name="gpt-4o-mini", provider="openai",
                    price={"input": 1, "output": 2, "cached_input": 0.5})  # type: ignore[arg-type]
    )  # fmt: skip
    assert configured.source is Source.CONFIG
    assert (configured.input.base, configured.output.base, configured.cached_input.base) == (
        1_000_000, 2_000_000, 500_000
    )  # fmt: skip
    models = (
        SimModel(name="sim", provider="sim"),
        OpenAIModel(name="local", provider="openai", base_url="http://127.0.0.1:8000/v1"),
        OpenAIModel(name="mine", provider="openai", base_url="http://10.0.0.5/v1"),
        OpenAIModel(name="house-model-7", provider="openai"),
    )
    book = PriceBook.resolve(models)
    refs = {m.name: book.price(m.name).ref for m in models}
    assert refs["sim"] == "simulator" and refs["local"] == refs["mine"] == "self-hosted"
    assert refs["house-model-7"].startswith("unknown to genai-prices")
    assert all(book.price(m.name).cost_pico(1000, 1000) == 0 for m in models)
    warned = [li for li in log_lines() if li["event"] == "model_price_unknown"]
    assert [w["model"] for w in warned] == ["house-model-7"]
    assert any(li["event"] == "model_prices" for li in log_lines())


def test_cost_is_exact_then_rounded_to_the_micro_dollar() -> None:
    price = Price(Rate(pico_per_token(0.15)), Rate(pico_per_token(0.6)),
                  Rate(pico_per_token(0.075)), Source.CONFIG)  # fmt: skip
    # 600 uncached input at 0.15, 400 cached at 0.075, 500 output at 0.6 ($/Mtok)
    assert price.cost_pico(1000, 500, 400) == 90_000_000 + 30_000_000 + 300_000_000
    assert Spend.of_pico(price.cost_pico(1000, 500, 400)) == Spend(420)
    assert Spend.of_pico(1_500_000).micro_usd == 2 and Spend.of_pico(1_499_999).micro_usd == 1
    tiered = Rate(3_000_000, ((200_000, 6_000_000),))
    assert (tiered.at(200_000), tiered.at(200_001)) == (3_000_000, 6_000_000)
    details = {"cached_tokens": 7}
    openai = openai_usage_of({"usage": {"prompt_tokens": 9, "prompt_tokens_details": details}})
    assert openai is not None and openai.cached_input_tokens == 7
    claude = anthropic_usage_of({"usage": {"input_tokens": 1, "cache_read_input_tokens": 5}})
    assert claude is not None and (claude.input_tokens, claude.cached_input_tokens) == (6, 5)
    bare = openai_usage_of({"usage": {}})
    assert bare is not None and bare.cached_input_tokens == 0


# -- spend through the gateway -----------------------------------------------


def _spend(metrics: Metrics, key: str, model: str, family: str = "sluice_spend_usd_total") -> Any:
    return sample(metrics, family, key=key, model=model)


async def test_streamed_and_anonymous_requests_are_spent(
    gateway: GatewayFactory, metrics: Metrics, log_lines: LogLines
) -> None:
    secret, key = make_key("team-a")
    client = await gateway(models=[SIM_PRICED], auth={"keys": [key], "anonymous": True})
    body = {"model": "sim", "messages": MSGS, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    for headers in ({"Authorization": f"Bearer {secret}"}, {}):
        resp = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert resp.status == 200
        await resp.read()
    assert _spend(metrics, "team-a", "sim") == pytest.approx(SIM_COST_USD)
    assert _spend(metrics, "(anonymous)", "sim") == pytest.approx(SIM_COST_USD)
    lines = [li for li in log_lines() if li["event"] == "request" and li.get("outcome")]
    assert [(li["spend_usd"], li["spend_estimated"]) for li in lines] == [(SIM_COST_USD, False)] * 2


async def _answering(aiohttp_server: Any, usage: dict[str, Any] | None) -> FakeOpenAI:
    """An upstream whose non-streamed answer is "Hello there, friend." with
    ``usage`` (None: no usage object, as some servers)."""

    async def complete(request: web.Request) -> web.Response:
        answer = {
            "id": "c", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": "Hello there, friend."},
                         "finish_reason": "stop"}],
        }  # fmt: skip
        return web.json_response(answer if usage is None else {**answer, "usage": usage})

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", complete)
    server = await aiohttp_server(upstream)
    fake = FakeOpenAI()
    fake.base_url = str(server.make_url("/v1"))
    return fake


async def test_non_streamed_cached_input_is_priced_at_its_rate(
    gateway: GatewayFactory, aiohttp_server: Any, metrics: Metrics, log_lines: LogLines
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
             "prompt_tokens_details": {"cached_tokens": 600}}  # fmt: skip
    fake = await _answering(aiohttp_server, usage)
    price = {"input": 2.0, "output": 8.0, "cached_input": 0.5}
    client = await gateway(models=[openai_model(fake, price=price)])
    async with oai(client, "k") as sdk:
        await sdk.chat.completions.create(model="up", messages=MSGS)  # type: ignore[arg-type]
    expected = (400 * 2.0 + 600 * 0.5 + 10 * 8.0) / 1e6
    assert _spend(metrics, "(anonymous)", "up") == pytest.approx(expected)
    line = next(li for li in log_lines() if li["event"] == "request")
    assert (line["spend_usd"], line["spend_estimated"]) == (expected, False)


async def test_streamed_cached_input_is_priced_at_its_rate(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics, log_lines: LogLines
) -> None:
    """A streamed answer's ``prompt_tokens_details.cached_tokens`` is priced at
    ``cached_input`` (it was priced at the input rate before); translated to an
    Anthropic client too."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
             "prompt_tokens_details": {"cached_tokens": 600}}  # fmt: skip
    last = {**chunk(finish="stop"), "usage": usage}
    price = {"input": 2.0, "output": 8.0, "cached_input": 0.5}
    client = await gateway(models=[openai_model(fake_openai, price=price)])
    expected = (400 * 2.0 + 600 * 0.5 + 10 * 8.0) / 1e6
    for n, (path, body) in enumerate([
        ("/v1/chat/completions", {"model": "up", "messages": MSGS, "stream": True}),
        ("/v1/messages", {"model": "up", "messages": MSGS, "stream": True, "max_tokens": 9}),
    ], start=1):  # fmt: skip
        fake_openai.script = Script(events=[sse(chunk("Hi")), sse(last), sse("[DONE]")])
        resp = await client.post(path, json=body)
        assert resp.status == 200
        await resp.read()

        async def spent(n: int = n) -> bool:
            return _spend(metrics, "(anonymous)", "up") == pytest.approx(n * expected)

        await poll(spent)
    lines = [li for li in log_lines() if li["event"] == "request" and "spend_usd" in li]
    assert [li["spend_usd"] for li in lines] == [expected, expected]


async def test_negative_upstream_counts_are_no_counts(
    gateway: GatewayFactory, aiohttp_server: Any, metrics: Metrics, log_lines: LogLines
) -> None:
    """An upstream's ``-5`` tokens are treated as missing (then estimated):
    they would refund the key's budget, and Prometheus counters raise on
    them (a 500, found by the Gemini fuzz test's ``promptTokenCount: -1``)."""
    fake = await _answering(aiohttp_server, {"prompt_tokens": -5, "completion_tokens": -1})
    client = await gateway(models=[openai_model(fake, price=PRICE)])
    resp = await client.post("/v1/chat/completions", json={"model": "up", "messages": MSGS})
    assert resp.status == 200, await resp.text()
    line = next(li for li in log_lines() if li["event"] == "request")
    assert line["spend_estimated"] is True and line["spend_usd"] > 0
    assert _spend(metrics, "(anonymous)", "up") == pytest.approx(line["spend_usd"])


async def test_a_non_streamed_answer_without_usage_is_estimated_and_charged(
    gateway: GatewayFactory, aiohttp_server: Any, metrics: Metrics, log_lines: LogLines
) -> None:
    fake = await _answering(aiohttp_server, None)
    secret, key = make_key("team-a", token_budget=1000)
    client = await gateway(models=[openai_model(fake, price=PRICE)], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        await sdk.chat.completions.create(model="up", messages=MSGS)  # type: ignore[arg-type]
    tokens_in = estimate_input_tokens({"messages": MSGS})
    tokens_out = estimate_tokens("Hello there, friend.")
    cost = (tokens_in * 100 + tokens_out * 1000) / 1e6
    line = next(li for li in log_lines() if li["event"] == "request")
    assert (line["spend_usd"], line["spend_estimated"]) == (pytest.approx(cost), True)
    assert _spend(metrics, "team-a", "up", "sluice_estimated_spend_usd_total") == pytest.approx(
        cost
    )
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    assert me["usage"]["period"]["estimated_tokens"] == tokens_in + tokens_out > 0


async def test_a_client_that_leaves_pays_for_what_it_got_estimated(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics, log_lines: LogLines
) -> None:
    # No usage from the upstream, and it never ends: the client leaves after 3 events.
    words = ["alpha", " beta", " gamma"]
    fake_openai.script = Script(events=[sse(chunk(w)) for w in words], then="hang")
    secret, key = make_key("team-a", usd_budget=5)
    client = await gateway(models=[openai_model(fake_openai, price=PRICE)],
                           auth={"keys": [key]})  # fmt: skip
    body = {"model": "up", "messages": MSGS, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(
        client.make_url("/v1/chat/completions"), json=body,
        headers={"Authorization": f"Bearer {secret}"},
    ) as resp:  # fmt: skip
        for _ in range(3):
            await resp.content.readuntil(b"\n\n")

    async def charged() -> bool:
        return any(li.get("outcome") == "client_disconnected" for li in log_lines())

    await poll(charged)
    line = next(li for li in log_lines() if li.get("outcome") == "client_disconnected")
    assert line["usage_estimated"] is True and line["spend_estimated"] is True
    cost = (line["input_tokens"] * 100 + line["output_tokens"] * 1000) / 1e6
    assert line["output_tokens"] == 3 and line["spend_usd"] == pytest.approx(cost)
    assert _spend(metrics, "team-a", "up") == pytest.approx(cost)
    assert _spend(metrics, "team-a", "up", "sluice_estimated_spend_usd_total") == pytest.approx(
        cost
    )
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    period = me["usage"]["period"]
    assert me["limits"]["usd_budget"] == 5
    assert period["spend_usd"] == period["estimated_spend_usd"] == pytest.approx(cost)
    assert period["remaining_usd"] == pytest.approx(5 - cost)


async def test_a_background_generation_is_spent_on_its_end_line(
    gateway: GatewayFactory, metrics: Metrics, log_lines: LogLines
) -> None:
    client = await gateway(models=[SIM_PRICED])
    resp = await client.post("/v1/responses", json={"model": "sim", "input": "hi",
                                                    "background": True})  # fmt: skip
    assert resp.status == 200

    async def ended() -> bool:
        return any(li["event"] == "detached_end" for li in log_lines())

    await poll(ended)
    end = next(li for li in log_lines() if li["event"] == "detached_end")
    cost = (end["input_tokens"] * 100 + end["output_tokens"] * 1000) / 1e6
    assert end["output_tokens"] > 0 and end["spend_usd"] == pytest.approx(cost)
    assert _spend(metrics, "(anonymous)", "sim") == pytest.approx(cost)
