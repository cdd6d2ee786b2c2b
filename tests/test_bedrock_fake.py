"""The fake Bedrock upstream is proven real: boto3's own ``bedrock-runtime``
client signs requests the fake accepts, reads the fake's event stream and
Converse bodies without error, and sees the same text, tool calls and usage
as a client of the gateway does from the same bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import openai
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from tests.fake_bedrock import (
    REGION,
    UPSTREAM_MODEL,
    FakeBedrock,
    aws_environment,
    bedrock_model,
    converse_response,
    exception,
    message_start,
    script,
    start_fake_bedrock,
    text_delta,
    text_events,
    tool_events,
)
from tests.fakes import Script
from tests.helpers import GatewayFactory, sdk

ARGS = {"city": "São Paulo", "days": [1, 2]}


@pytest.fixture
async def fake(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeBedrock:
    aws_environment(monkeypatch)
    return await start_fake_bedrock(aiohttp_server)


def _boto(fake: FakeBedrock) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.base_url,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}),
    )


def _read_stream(fake: FakeBedrock) -> list[dict[str, Any]]:
    """boto3's ``converse_stream``, read whole (the stream and the client
    closed after, also when reading raised: an unclosed connection is a
    ResourceWarning when collected, failing whichever test runs then)."""
    client = _boto(fake)
    try:
        response = client.converse_stream(
            modelId=UPSTREAM_MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
        stream = response["stream"]
        try:
            return list(stream)
        finally:
            stream.close()
    finally:
        client.close()


def _converse(fake: FakeBedrock) -> dict[str, Any]:
    client = _boto(fake)
    try:
        answer: dict[str, Any] = client.converse(
            modelId=UPSTREAM_MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
        return answer
    finally:
        client.close()


async def test_boto3_reads_the_stream_the_gateway_relays(
    fake: FakeBedrock, gateway: GatewayFactory
) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake.script = script(tool_events("get_weather", arguments, 5, "tooluse_x"))
    events = await asyncio.to_thread(_read_stream, fake)
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events
                   if "contentBlockDelta" in e)  # fmt: skip
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in events
                 if "contentBlockStart" in e)  # fmt: skip
    streamed = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                       if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {}))  # fmt: skip
    usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    stop = next(e["messageStop"]["stopReason"] for e in events if "messageStop" in e)
    assert (text, start["name"]) == ("Let me check.", "get_weather")
    assert start["toolUseId"] == "tooluse_x"
    assert orjson.loads(streamed) == ARGS and stop == "tool_use"
    # boto3 signed with the environment's credentials; the fake checked it.
    assert fake.headers[0]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert fake.paths[0] == "/model/anthropic.claude-up-v1%3A0/converse-stream"

    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="nova", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert "".join(d.content or "" for d in deltas) == text
    assert calls[0].id == start["toolUseId"] and calls[0].function.name == start["name"]
    assert "".join(tc.function.arguments or "" for tc in calls) == streamed
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == usage["inputTokens"]
    assert chunks[-1].usage.completion_tokens == usage["outputTokens"]
    # The gateway's signature (the same credentials, from botocore's chain) passed too.
    assert fake.paths[1] == fake.paths[0]
    assert fake.headers[1]["authorization"].startswith("AWS4-HMAC-SHA256 ")


async def test_boto3_reads_converse_and_errors(fake: FakeBedrock, gateway: GatewayFactory) -> None:
    fake.response = converse_response(
        [{"text": "Sunny."}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": ARGS}}],
        "tool_use",
    )
    answer = await asyncio.to_thread(_converse, fake)
    content = answer["output"]["message"]["content"]
    assert content[0]["text"] == "Sunny." and content[1]["toolUse"]["input"] == ARGS
    assert answer["usage"]["inputTokens"] == 12 and answer["stopReason"] == "tool_use"

    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        completion = await oa.chat.completions.create(
            model="nova", messages=[{"role": "user", "content": "hi"}]
        )
    message = completion.choices[0].message
    assert message.content == "Sunny." and message.tool_calls is not None
    assert orjson.loads(message.tool_calls[0].function.arguments) == ARGS
    assert completion.usage is not None and completion.usage.prompt_tokens == 12

    # An HTTP error and an exception message read by boto3 as Bedrock's.
    fake.queue = [Script(status=429)]
    with pytest.raises(ClientError) as refused:
        await asyncio.to_thread(_read_stream, fake)
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    cut_short = [message_start(), text_delta(0, "a"), exception("modelStreamErrorException")]
    fake.queue = [script(cut_short)]
    with pytest.raises(EventStreamError) as cut:
        await asyncio.to_thread(_read_stream, fake)
    assert cut.value.response["Error"]["Code"] == "modelStreamErrorException"


async def test_a_wrong_signature_is_refused(
    fake: FakeBedrock, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    fake.script = script(text_events(["x"]))
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        with pytest.raises(openai.APIStatusError) as refused:
            await oa.chat.completions.create(
                model="nova", messages=[{"role": "user", "content": "hi"}], stream=True
            )
    assert refused.value.status_code == 502
    assert refused.value.body["code"] == "upstream_auth_error"  # type: ignore[index]
