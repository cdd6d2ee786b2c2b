"""The official openai SDK against an Anthropic upstream (Chat Completions ->
Messages translation), on real sockets."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from gateway.dialects.translate_request import DEFAULT_MAX_TOKENS
from tests.fake_anthropic import (
    MESSAGE_STOP,
    FakeAnthropic,
    anthropic_model,
    block_stop,
    delta,
    error,
    message,
    message_delta,
    message_start,
    parse_sse,
    text_block,
    text_events,
    thinking_block,
    tool_events,
    wire,
)
from tests.fakes import Script
from tests.helpers import GatewayFactory, sdk

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
ARGS = {"city": "São Paulo", "when": ["today", "tomorrow"], "detail": {"hourly": True, "n": 24}}
TOOLS: Any = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


async def test_stream_text_with_usage(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(events=wire(text_events(["Hel", "lo"], "max_tokens")))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="claude",
            messages=[{"role": "system", "content": "Be terse."}, *MESSAGES],
            stream=True,
            stream_options={"include_usage": True},
            stop="END",
            temperature=1.5,
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 2, 13)
    assert all(c.model == "claude" for c in chunks)
    sent = fake_anthropic.records[0].body
    assert sent["system"] == "Be terse."
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == DEFAULT_MAX_TOKENS and sent["stream"] is True
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 1.0
    assert sent["model"] == "claude-up"


async def test_no_usage_chunk_unless_asked(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="claude", messages=MESSAGES, stream=True, max_tokens=5
        )
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake_anthropic.records[0].body["max_tokens"] == 5


@pytest.mark.parametrize("pieces", [1, 7, 40], ids=lambda n: f"{n}-deltas")
async def test_streamed_tool_call_assembles_upstream_json(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic, pieces: int
) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake_anthropic.script = Script(
        events=wire(tool_events("get_weather", arguments, pieces, "toolu_abc"))
    )
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="claude", messages=MESSAGES, stream=True, tools=TOOLS, tool_choice="required"
        )
        chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_abc" and calls[0].type == "function"
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert {tc.index for tc in calls} == {0}
    assembled = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert orjson.loads(assembled) == ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    sent = fake_anthropic.records[0].body
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather by city",
                              "input_schema": TOOLS[0]["function"]["parameters"]}]  # fmt: skip
    assert sent["tool_choice"] == {"type": "any"}


async def test_sdk_stream_helper_accumulates_tool_call(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake_anthropic.script = Script(events=wire(tool_events("get_weather", arguments, 13)))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with (
        sdk(client) as oa,
        oa.chat.completions.stream(model="claude", messages=MESSAGES, tools=TOOLS) as stream,
    ):
        async for _ in stream:
            pass
        completion = await stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and orjson.loads(call.function.arguments) == ARGS


async def test_tool_result_follow_up_turn(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, sunny"},
    ]  # fmt: skip
    async with sdk(client) as oa:
        completion = await oa.chat.completions.create(model="claude", messages=history, tools=TOOLS)
    assert completion.choices[0].message.content == "hi there"
    sent = fake_anthropic.records[0].body
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, sunny"}]},
    ]  # fmt: skip


async def test_thinking_becomes_reasoning_content(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    events = [message_start(), thinking_block(0), delta(0, thinking="Let me think… 🤔"),
              delta(0, signature="c2ln"), block_stop(0), text_block(1), delta(1, text="42"),
              block_stop(1), message_delta(), MESSAGE_STOP]  # fmt: skip
    fake_anthropic.script = Script(events=wire(events))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="claude",
            messages=MESSAGES,
            stream=True,
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 2048}},
        )
        chunks = [c async for c in stream]
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks
    )
    assert reasoning == "Let me think… 🤔"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "42"
    assert fake_anthropic.records[0].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_non_streaming_tool_use(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.message = message(
        [{"type": "text", "text": "Checking."},
         {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": ARGS}],
        stop_reason="tool_use",
    )  # fmt: skip
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        completion = await oa.chat.completions.create(model="claude", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    (call,) = choice.message.tool_calls or []
    assert call.id == "toolu_9" and call.type == "function"
    assert orjson.loads(call.function.arguments) == ARGS
    assert completion.usage is not None and completion.usage.prompt_tokens == 12
    assert completion.model == "claude"
    assert fake_anthropic.records[0].body["stream"] is False


async def test_overloaded_mid_stream_is_an_error_never_done(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    events = [message_start(), text_block(0), delta(0, text="partial"), error()]
    fake_anthropic.script = Script(events=wire(events))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    received: list[str] = []
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="claude", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as excinfo:
            async for c in stream:
                received.append(c.choices[0].delta.content or "")
    assert "".join(received) == "partial"
    assert "overloaded_error" in excinfo.value.message
    resp = await client.post(
        "/v1/chat/completions", json={"model": "claude", "messages": MESSAGES, "stream": True}
    )
    events_out = parse_sse(await resp.text())
    assert "[DONE]" not in [data for _, data in events_out]
    assert events_out[-1][1]["error"]["type"] == "overloaded_error"


async def test_unicode_split_across_reads(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    pieces = ["naïve ", "日本語", " 👩‍👩‍👧", " é"]
    wire_bytes = b"".join(wire(text_events(pieces)))
    fake_anthropic.script = Script(
        events=[wire_bytes[i : i + 1] for i in range(len(wire_bytes))], itl_s=0.0005
    )
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="claude", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "".join(pieces)
