"""Gemini-format clients (Google's ``google-genai`` SDK) served from the two
other new providers, Azure OpenAI and AWS Bedrock (issue 23: every client
dialect from every provider): a tool call streamed and whole, read by the
official SDK through Sluice's ``/v1beta`` routes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.genai import types

from tests.fake_azure import FakeAzure, azure_model, completion, tool_stream
from tests.fake_bedrock import (
    FakeBedrock,
    aws_environment,
    bedrock_model,
    converse_response,
    script,
    start_fake_bedrock,
    tool_events,
)
from tests.fakes import Script
from tests.helpers import GatewayFactory
from tests.test_gemini_sdk import WEATHER, genai_client, root_of

ARGS = {"city": "Paris"}


@pytest.fixture
async def fake_bedrock(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeBedrock:
    aws_environment(monkeypatch)
    return await start_fake_bedrock(aiohttp_server)


def _calls(responses: list[Any]) -> list[Any]:
    return [fc for r in responses for fc in r.function_calls or ()]


async def _both(client: Any, model: str) -> tuple[list[Any], Any]:
    """A streamed and a whole generation with the weather tool."""
    config = types.GenerateContentConfig(tools=[WEATHER])
    async with genai_client(root_of(client)) as sdk:
        stream = await sdk.aio.models.generate_content_stream(
            model=model, contents="weather in Paris?", config=config
        )
        streamed = [r async for r in stream]
        whole = await sdk.aio.models.generate_content(
            model=model, contents="weather in Paris?", config=config
        )
    return streamed, whole


async def test_a_gemini_client_from_azure(gateway: GatewayFactory, fake_azure: FakeAzure) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake_azure.script = Script(events=tool_stream("get_weather", arguments))
    fake_azure.completion = completion(None, "tool_calls", ("get_weather", arguments))
    client = await gateway(models=[azure_model(fake_azure)])
    streamed, whole = await _both(client, "az")
    calls = _calls(streamed)
    assert [(c.name, c.args) for c in calls] == [("get_weather", ARGS)]  # one whole call
    assert streamed[-1].usage_metadata is not None
    assert streamed[-1].usage_metadata.prompt_token_count
    assert [(c.name, c.args) for c in whole.function_calls or ()] == [("get_weather", ARGS)]
    # The tool reached Azure as a Chat Completions function.
    sent = fake_azure.records[0].body
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["stream"] is True


async def test_a_gemini_client_from_bedrock(
    gateway: GatewayFactory, fake_bedrock: FakeBedrock
) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake_bedrock.script = script(tool_events("get_weather", arguments, 3))
    fake_bedrock.response = converse_response(
        [{"text": "Let me check."}, {"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                                  "input": ARGS}}],
        "tool_use",
    )  # fmt: skip
    client = await gateway(models=[bedrock_model(fake_bedrock)])
    streamed, whole = await _both(client, "nova")
    assert "".join(r.text or "" for r in streamed) == "Let me check."
    assert [(c.name, c.args) for c in _calls(streamed)] == [("get_weather", ARGS)]
    assert streamed[-1].usage_metadata is not None
    assert streamed[-1].usage_metadata.candidates_token_count == 20
    assert whole.text == "Let me check."
    assert [(c.name, c.args) for c in whole.function_calls or ()] == [("get_weather", ARGS)]
    # The tool reached Bedrock as a Converse toolSpec.
    spec = fake_bedrock.records[0].body["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["name"] == "get_weather"
