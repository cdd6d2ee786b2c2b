"""The fake Azure upstream proven real: the official ``openai.AsyncAzureOpenAI``
client (and ``AsyncOpenAI`` on the v1 path) reads its bytes without error
and sees the text, tool calls, usage and content-filter finish the fake
meant; the requests the SDK makes are the ones the fake routes (and the
ones Sluice's Azure provider makes: tests/test_azure.py)."""

from __future__ import annotations

from typing import Any

import openai
import orjson

from tests.fake_azure import (
    API_VERSION,
    DEPLOYMENT,
    KEY,
    USAGE,
    FakeAzure,
    completion,
    responses_stream,
    text_stream,
    tool_stream,
)
from tests.fakes import Script

MESSAGES: Any = [{"role": "user", "content": "hi"}]
ARGS = orjson.dumps({"city": "Zürich", "days": [1, 2]}).decode()


def azure_sdk(fake: FakeAzure) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=fake.endpoint, api_key=KEY, api_version=API_VERSION, max_retries=0
    )


def v1_sdk(fake: FakeAzure) -> openai.AsyncOpenAI:
    """The v1 API as Microsoft's docs use it: the plain client on ``/openai/v1/``."""
    return openai.AsyncOpenAI(
        base_url=f"{fake.endpoint}/openai/v1/", api_key="unused",
        default_headers={"api-key": KEY}, max_retries=0,
    )  # fmt: skip


async def test_sdk_streams_text_usage_and_content_filter(fake_azure: FakeAzure) -> None:
    fake_azure.script = Script(events=text_stream(["Hel", "lo wörld"], "content_filter"))
    async with azure_sdk(fake_azure) as az:
        stream = await az.chat.completions.create(
            model=DEPLOYMENT, messages=MESSAGES, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [c async for c in stream]
    seen = fake_azure.seen[0]
    assert seen.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen.query == {"api-version": API_VERSION} and seen.headers["api-key"] == KEY
    assert chunks[0].choices == [] and chunks[0].model_extra is not None
    assert "prompt_filter_results" in chunks[0].model_extra
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and
                   c.choices[0].delta)  # fmt: skip
    assert text == "Hello wörld"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "content_filter" and finishes.count("content_filter") == 1
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (17, 5)


async def test_sdk_streams_a_tool_call_on_the_v1_path(fake_azure: FakeAzure) -> None:
    fake_azure.script = Script(events=tool_stream("get_weather", ARGS))
    async with v1_sdk(fake_azure) as az:
        stream = await az.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert fake_azure.seen[0].path == "/openai/v1/chat/completions"
    assert fake_azure.records[0].body["model"] == DEPLOYMENT
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "call_az1" and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert "".join(t.function.arguments or "" for t in calls if t.function) == ARGS
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == USAGE["total_tokens"]


async def test_sdk_reads_a_completion_and_native_responses(fake_azure: FakeAzure) -> None:
    fake_azure.completion = completion(None, "tool_calls", ("get_weather", ARGS))
    fake_azure.script = Script(events=responses_stream("héllo"))
    async with azure_sdk(fake_azure) as az:
        done = await az.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    async with v1_sdk(fake_azure) as az1:
        stream = await az1.responses.create(model=DEPLOYMENT, input="hi", stream=True)
        events = [e async for e in stream]
    call = (done.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.arguments == ARGS
    assert done.usage is not None and done.usage.prompt_tokens == 17
    assert fake_azure.seen[1].path == "/openai/v1/responses"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "héllo"
