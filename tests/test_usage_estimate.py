"""Usage when the upstream sends none: the estimator (gateway/usage_estimate.py),
each dialect's encoder filling the client's usage object, and the gateway
marking the figure estimated (log line, key metrics, /v1/sluice/key) and
charging it to the key's quotas. The estimate's accuracy against a real
tokenizer is measured in tests/test_real_model.py."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from gateway.dialects.anthropic import AnthropicPassthrough
from gateway.dialects.frames import StreamEncoder, Usage
from gateway.dialects.openai import OpenAIPassthrough
from gateway.dialects.translate_responses import ResponsesFromChat
from gateway.dialects.translate_stream import AnthropicFromOpenAI, OpenAIFromAnthropic
from gateway.metrics import Metrics
from gateway.providers.base import UpstreamChunk
from gateway.quota.store import Windows
from gateway.usage_estimate import (
    MESSAGE_TOKENS,
    REPLY_TOKENS,
    estimate_input_tokens,
    estimate_output_tokens,
    estimate_tokens,
)
from tests.conftest import LogLines
from tests.fake_anthropic import parse_sse, text_events
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.keyhelp import ant, make_key, oai
from tests.test_auth import sample

PIECES = ["Hello", ",", " world", "!", " The", " answer", " is", " 42", "."]
TEXT = "".join(PIECES)


def test_estimate_counts_word_pieces() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello") == 1
    assert estimate_tokens(" the cat sat on the mat") == 6
    assert estimate_tokens("2026") == 4  # digits one by one
    assert estimate_tokens("internationalization") == 3  # a long word: one per 7 letters
    assert estimate_tokens("StreamClock") == 2  # camelCase splits
    assert estimate_tokens("don't") == 2
    assert estimate_tokens("x = {'a': [1, 2]}") >= 8


def test_output_estimate_counts_events_unless_the_upstream_batches() -> None:
    assert estimate_output_tokens(["a", "b", "c"], 3) == 3
    assert estimate_output_tokens([" walking", " home"], 2) == 2  # text: 3, not over 1.5 * 2
    assert estimate_output_tokens(["internationalization"], 1) == 3  # batched
    assert estimate_output_tokens([], 0) == 0


BODIES = {
    "chat": {"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
    ]},
    "responses": {"model": "m", "instructions": "Be brief.", "input": "Say hello"},
    "messages": {"model": "m", "max_tokens": 5, "system": "Be brief.",
                 "messages": [{"role": "user", "content": "Say hello"}]},
}  # fmt: skip


@pytest.mark.parametrize("dialect", sorted(BODIES))
def test_input_estimate_reads_the_prompt_in_every_dialect(dialect: str) -> None:
    # "Be brief." = 3, "Say hello" = 2; two messages; the reply's priming.
    assert estimate_input_tokens(BODIES[dialect]) == 5 + 2 * MESSAGE_TOKENS + REPLY_TOKENS


def _openai_chunks(usage: dict[str, int] | None = None) -> list[UpstreamChunk]:
    payloads: list[dict[str, Any]] = [chunk(p) for p in PIECES]
    payloads.append(chunk(finish="stop"))
    if usage is not None:
        payloads.append({**chunk(), "choices": [], "usage": usage})
    return [UpstreamChunk(orjson.dumps(p), p) for p in payloads]


def _run(encoder: StreamEncoder, chunks: list[UpstreamChunk]) -> bytes:
    return b"".join(encoder.encode(c).data for c in chunks) + encoder.finish()


def _datas(raw: bytes) -> list[Any]:
    return [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]


EXPECTED = Usage(
    estimate_input_tokens(BODIES["chat"]), estimate_output_tokens(PIECES, len(PIECES)), True
)


def test_chat_usage_chunk_is_estimated_when_the_upstream_sent_none() -> None:
    encoder = OpenAIPassthrough(include_usage=True, body=BODIES["chat"])
    raw = _run(encoder, _openai_chunks())
    last = _datas(raw)[-1]
    assert raw.endswith(b"data: [DONE]\n\n")
    assert last["choices"] == [] and last["id"] == "chatcmpl-fake"
    assert last["usage"] == {
        "prompt_tokens": EXPECTED.input_tokens,
        "completion_tokens": EXPECTED.output_tokens,
        "total_tokens": EXPECTED.input_tokens + EXPECTED.output_tokens,  # type: ignore[operator]
    }
    assert encoder.usage() == EXPECTED


def test_chat_usage_from_the_upstream_is_relayed_not_estimated() -> None:
    encoder = OpenAIPassthrough(include_usage=True, body=BODIES["chat"])
    reported = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    raw = _run(encoder, _openai_chunks(reported))
    assert [d["usage"] for d in _datas(raw) if d.get("usage")] == [reported]
    assert encoder.usage() == Usage(30, 9)


def test_chat_without_include_usage_gets_no_usage_chunk_but_a_usage() -> None:
    encoder = OpenAIPassthrough(include_usage=False, body=BODIES["chat"])
    raw = _run(encoder, _openai_chunks())
    assert not any("usage" in d for d in _datas(raw))
    assert encoder.usage() == EXPECTED


def test_responses_completed_carries_the_estimate() -> None:
    encoder = ResponsesFromChat(BODIES["responses"])
    raw = _run(encoder, _openai_chunks())
    completed = next(e for _, e in parse_sse(raw.decode()) if e["type"] == "response.completed")
    usage = completed["response"]["usage"]
    expected = estimate_input_tokens(BODIES["responses"])
    assert usage["input_tokens"] == expected == encoder.usage().input_tokens
    assert usage["output_tokens"] == EXPECTED.output_tokens
    assert encoder.usage().estimated


def test_anthropic_message_delta_carries_the_estimate() -> None:
    encoder = AnthropicFromOpenAI(model="m", body=BODIES["messages"])
    raw = _run(encoder, _openai_chunks())
    delta = next(e for _, e in parse_sse(raw.decode()) if e["type"] == "message_delta")
    assert delta["usage"] == {
        "input_tokens": estimate_input_tokens(BODIES["messages"]),
        "output_tokens": EXPECTED.output_tokens,
    }


def test_anthropic_upstream_usage_is_kept() -> None:
    events = text_events(["Hi", " there"])  # input_tokens 11, output_tokens 2
    chunks = [UpstreamChunk(orjson.dumps(e), e, e["type"]) for e in events if e["type"] != "ping"]
    for encoder in (
        AnthropicPassthrough(BODIES["messages"]),
        OpenAIFromAnthropic(model="m", include_usage=True, body=BODIES["chat"]),
    ):
        _run(encoder, chunks)
        assert encoder.usage() == Usage(11, 2)


def test_a_stream_cut_short_counts_what_was_relayed() -> None:
    encoder = OpenAIPassthrough(include_usage=True, body=BODIES["chat"])
    for c in _openai_chunks()[:3]:
        encoder.encode(c)
    assert encoder.usage() == Usage(EXPECTED.input_tokens, 3, True)


# -- through the gateway: the log line, quotas, key metrics, /v1/sluice/key ---


@pytest.fixture
def no_usage(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake streams PIECES and no usage, whatever it is asked (like llama.cpp)."""
    events = [sse(chunk(p)) for p in PIECES] + [sse(chunk(finish="stop")), sse("[DONE]")]
    fake_openai.script = Script(events=events)
    return fake_openai


async def test_gateway_fills_marks_and_charges_an_estimated_usage(
    gateway: GatewayFactory, no_usage: FakeOpenAI, metrics: Metrics, log_lines: LogLines
) -> None:
    secret, key = make_key("team-a", token_budget=100_000)
    client = await gateway(models=[openai_model(no_usage)], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        stream = await sdk.chat.completions.create(
            model="up", messages=BODIES["chat"]["messages"], stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [c async for c in stream]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        EXPECTED.input_tokens, EXPECTED.output_tokens
    )  # fmt: skip
    line = next(li for li in log_lines() if li.get("outcome") == "completed")
    assert line["usage_estimated"] is True
    assert (line["input_tokens"], line["output_tokens"]) == (
        EXPECTED.input_tokens, EXPECTED.output_tokens
    )  # fmt: skip
    for kind, n in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
        for family in ("sluice_key_tokens_total", "sluice_key_estimated_tokens_total"):
            assert sample(metrics, family, key="team-a", model="up", type=kind) == n
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    assert me["usage"]["period"]["tokens"] == usage.total_tokens
    assert me["usage"]["period"]["estimated_tokens"] == usage.total_tokens


async def test_anthropic_client_reads_estimated_counts_not_zeros(
    gateway: GatewayFactory, no_usage: FakeOpenAI
) -> None:
    secret, key = make_key("team-a")
    client = await gateway(models=[openai_model(no_usage)], auth={"keys": [key]})
    async with ant(client, secret) as sdk, sdk.messages.stream(
        model="up", max_tokens=20, system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:  # fmt: skip
        final = await stream.get_final_message()
    assert final.usage.input_tokens == estimate_input_tokens(BODIES["messages"])
    assert final.usage.output_tokens == EXPECTED.output_tokens


async def test_reported_usage_is_not_marked_estimated(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics, log_lines: LogLines
) -> None:
    reported = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    fake_openai.script = Script(
        events=[sse(chunk("hi")), sse({**chunk(), "choices": [], "usage": reported}), sse("[DONE]")]
    )
    secret, key = make_key("team-a", token_budget=100_000)
    client = await gateway(models=[openai_model(fake_openai)], auth={"keys": [key]})
    async with oai(client, secret) as sdk:
        stream = await sdk.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        _ = [c async for c in stream]
    line = next(li for li in log_lines() if li.get("outcome") == "completed")
    assert (line["input_tokens"], line["output_tokens"], line["usage_estimated"]) == (30, 9, False)
    assert sample(metrics, "sluice_key_tokens_total", key="team-a", model="up", type="input") == 30
    assert not sample(
        metrics, "sluice_key_estimated_tokens_total", key="team-a", model="up", type="input"
    )
    me = await (await client.get("/v1/sluice/key", headers={"x-api-key": secret})).json()
    assert me["usage"]["period"]["estimated_tokens"] == 0


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_stores_count_estimated_tokens_apart(kind: str, tmp_path: Any) -> None:
    from tests.redis_server import RedisServer
    from tests.test_quota_redis import store_for

    server = RedisServer(tmp_path) if kind == "redis" else None
    if server is not None:
        server.start()
    store = store_for(kind, server)
    try:
        w = Windows.at(time.time(), "day")
        await store.settle("k", w, None, 10)
        await store.settle("k", w, None, 7, 7)
        usage = await store.usage("k", w)
        assert (usage.period_tokens, usage.period_estimated_tokens) == (17, 7)
        assert usage.tokens == 17
    finally:
        await store.close()
        if server is not None:
            server.stop()
