"""The official anthropic SDK as a client of /v1/messages, on real sockets:
against a fake Anthropic upstream (passthrough), an OpenAI-compatible fake and
the simulator (translation), streaming (``messages.stream`` and
``create(stream=True)``) and not."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest

from gateway.providers.sim import sim_token
from tests.fake_anthropic import (
    MESSAGE_STOP,
    FakeAnthropic,
    anthropic_model,
    anthropic_sdk,
    block_stop,
    delta,
    error,
    message,
    message_start,
    parse_sse,
    text_block,
    text_events,
    tool_events,
    wire,
)
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
SIM_TEXT = "".join(sim_token(i) for i in range(8))
WEATHER_ARGS = {"city": "Zürich", "units": "celsius", "days": [1, 2, 3]}


# -- against a fake Anthropic upstream (same dialect: passthrough) ----------


async def test_messages_stream_from_fake_anthropic(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(events=wire(text_events(["Hel", "lo", " wörld 🌍"])))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with (
        anthropic_sdk(client) as ac,
        ac.messages.stream(
            model="claude", max_tokens=64, messages=MESSAGES, system="be brief"
        ) as stream,
    ):
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Hello wörld 🌍"
    assert final.content[0].type == "text" and final.content[0].text == "Hello wörld 🌍"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 3
    sent = fake_anthropic.records[0].body
    assert sent["model"] == "claude-up" and sent["system"] == "be brief"
    assert sent["max_tokens"] == 64 and sent["stream"] is True


async def test_create_stream_true_yields_upstream_events(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(events=wire(tool_events("get_weather", '{"a": 1}', 3)))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with anthropic_sdk(client) as ac:
        stream = await ac.messages.create(
            model="claude", max_tokens=64, messages=MESSAGES, stream=True
        )
        events = [e async for e in stream]
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "ping" not in types
    partial = "".join(
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    assert orjson.loads(partial) == {"a": 1}


async def test_unknown_fields_and_auth_headers(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TEST_ANTHROPIC_KEY", "gateway-key")
    model = anthropic_model(fake_anthropic, api_key_env="SLUICE_TEST_ANTHROPIC_KEY")
    client = await gateway(models=[model])
    async with anthropic_sdk(client, Authorization="Bearer client-bearer") as ac:
        result = await ac.messages.create(
            model="claude",
            max_tokens=32,
            messages=MESSAGES,
            thinking={"type": "enabled", "budget_tokens": 1024},
            metadata={"user_id": "u-1"},
            # This SDK release has no temperature/top_k arguments; the API still takes them.
            extra_body={"temperature": 0.2, "top_k": 5, "vendor_extension": {"nested": [1, 2]}},
        )
    assert result.content[0].type == "text" and result.content[0].text == "hi there"
    sent = fake_anthropic.records[0].body
    assert sent["top_k"] == 5 and sent["temperature"] == 0.2
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["vendor_extension"] == {"nested": [1, 2]}
    assert sent["metadata"] == {"user_id": "u-1"}
    headers = fake_anthropic.headers[0]
    # The SDK sends its key as x-api-key or a bearer token, depending on its release.
    credentials = (headers.get("x-api-key", ""), headers.get("authorization", ""))
    assert any(c.endswith("gateway-key") for c in credentials)
    assert not any("client" in value for value in headers.values())  # never the client's key


async def test_non_streaming_passthrough_keeps_upstream_fields(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
              {"type": "text", "text": "done"}]  # fmt: skip
    fake_anthropic.message = {**message(blocks), "container": None, "vendor": "x"}
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post(
        "/v1/messages",
        json={"model": "claude", "max_tokens": 8, "messages": MESSAGES},
        headers={"x-api-key": "client"},
    )
    assert resp.status == 200
    assert await resp.json() == fake_anthropic.message


async def test_overloaded_mid_stream_raises_in_sdk(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    events = [message_start(), text_block(0), delta(0, text="partial"), error()]
    fake_anthropic.script = Script(events=wire(events))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    texts: list[str] = []
    async with anthropic_sdk(client) as ac:
        with pytest.raises(anthropic.APIStatusError) as excinfo:
            async with ac.messages.stream(
                model="claude", max_tokens=64, messages=MESSAGES
            ) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    assert texts == ["partial"]
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["error"]["type"] == "overloaded_error"


async def test_stream_cut_before_message_stop_raises_in_sdk(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    events = [message_start(), text_block(0), delta(0, text="partial"), block_stop(0)]
    fake_anthropic.script = Script(events=wire(events), then="close")
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    async with anthropic_sdk(client) as ac:
        stream = await ac.messages.create(
            model="claude", max_tokens=64, messages=MESSAGES, stream=True
        )
        with pytest.raises(anthropic.APIStatusError) as excinfo:
            async for _ in stream:
                pass
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["error"]["type"] == "api_error"


async def test_missing_message_stop_is_never_a_clean_end(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    events = [message_start(), text_block(0), delta(0, text="x"), block_stop(0)]
    fake_anthropic.script = Script(events=wire(events))  # clean EOF, no message_stop
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post(
        "/v1/messages",
        json={"model": "claude", "max_tokens": 8, "messages": MESSAGES, "stream": True},
    )
    events = parse_sse(await resp.text())
    names = [name for name, _ in events]
    assert "message_stop" not in names
    assert names[-1] == "error"
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


# -- against an OpenAI-compatible fake (translation) -------------------------


async def test_messages_stream_from_fake_openai(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk("", role="assistant")), sse(chunk("Hel")), sse(chunk("lo")),
                sse(chunk(finish="stop")),
                sse({**chunk(), "choices": [],
                     "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}),
                sse("[DONE]")]
    )  # fmt: skip
    client = await gateway(models=[openai_model(fake_openai)])
    async with anthropic_sdk(client) as ac, ac.messages.stream(
        model="up",
        max_tokens=100,
        system="You are terse.",
        stop_sequences=["END"],
        extra_body={"temperature": 0.3},
        messages=[{"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"},
                  {"role": "user", "content": "again"}],
    ) as stream:  # fmt: skip
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Hello"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 9 and final.usage.output_tokens == 2
    sent = fake_openai.records[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    assert sent["model"] == "up-model" and sent["max_tokens"] == 100
    assert sent["stop"] == ["END"] and sent["temperature"] == 0.3
    assert sent["stream_options"] == {"include_usage": True}


async def test_tool_call_from_fake_openai_accumulates(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    arguments = orjson.dumps(WEATHER_ARGS).decode()
    pieces = [arguments[i : i + 3] for i in range(0, len(arguments), 3)]
    first = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    fake_openai.script = Script(
        events=[sse(chunk("", role="assistant")), sse(chunk("Checking.")),
                sse(chunk(tool_calls=[first])),
                *(sse(chunk(tool_calls=[{"index": 0, "function": {"arguments": p}}]))
                  for p in pieces),
                sse(chunk(finish="tool_calls")), sse("[DONE]")]
    )  # fmt: skip
    client = await gateway(models=[openai_model(fake_openai)])
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools: Any = [{"name": "get_weather", "description": "Weather by city", "input_schema": schema}]
    async with anthropic_sdk(client) as ac, ac.messages.stream(
        model="up", max_tokens=100, messages=MESSAGES, tools=tools,
        tool_choice={"type": "any"},
    ) as stream:  # fmt: skip
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.id == "call_1"
    assert tool.input == WEATHER_ARGS
    assert final.stop_reason == "tool_use"
    sent = fake_openai.records[0].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    assert sent["tool_choice"] == "required"


async def test_non_streaming_from_fake_openai(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    async with anthropic_sdk(client) as ac:
        result = await ac.messages.create(model="up", max_tokens=10, messages=MESSAGES)
    assert result.type == "message" and result.model == "up"
    assert result.content[0].type == "text" and result.content[0].text == "hi"
    assert result.stop_reason == "end_turn"
    assert result.usage.input_tokens == 3 and result.usage.output_tokens == 1
    assert fake_openai.records[0].body["stream"] is False
    assert "stream_options" not in fake_openai.records[0].body


async def test_openai_upstream_failure_mid_stream_raises_in_sdk(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("partial"))], then="close")
    client = await gateway(models=[openai_model(fake_openai)])
    async with anthropic_sdk(client) as ac:
        with pytest.raises(anthropic.APIStatusError) as excinfo:
            async with ac.messages.stream(model="up", max_tokens=9, messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
    assert isinstance(excinfo.value.body, dict) and excinfo.value.body["type"] == "error"


# -- against the simulator (OpenAI dialect) ----------------------------------


async def test_messages_stream_from_simulator(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with (
        anthropic_sdk(client) as ac,
        ac.messages.stream(model="sim", max_tokens=100, messages=MESSAGES) as stream,
    ):
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == SIM_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 8 and final.usage.input_tokens >= 1


async def test_create_stream_true_from_simulator_hits_max_tokens(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with anthropic_sdk(client) as ac:
        stream = await ac.messages.create(model="sim", max_tokens=3, messages=MESSAGES, stream=True)
        events = [e async for e in stream]
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")  # fmt: skip
    assert text == "".join(sim_token(i) for i in range(3))
    final_delta = events[-2]
    assert final_delta.type == "message_delta" and final_delta.delta.stop_reason == "max_tokens"
    assert final_delta.usage.output_tokens == 3


async def test_non_streaming_from_simulator(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with anthropic_sdk(client) as ac:
        result = await ac.messages.create(model="sim", max_tokens=100, messages=MESSAGES)
    assert result.content[0].type == "text" and result.content[0].text == SIM_TEXT
    assert result.stop_reason == "end_turn" and result.usage.output_tokens == 8


async def test_message_stop_is_last(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.post(
        "/v1/messages",
        json={"model": "sim", "max_tokens": 2, "messages": MESSAGES, "stream": True},
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    text = await resp.text()
    assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert MESSAGE_STOP["type"] in text
