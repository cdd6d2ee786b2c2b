"""The simulator as an OpenAI client sees it: ``n`` choices, tool calls and a
tool round trip, text that reads right across repetitions."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from gateway.providers.sim import sim_token
from tests.helpers import GatewayFactory, sdk

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 0, "itl_ms": 0, "output_tokens": 6}
TEXT = "".join(sim_token(i) for i in range(6))
MSGS: Any = [{"role": "user", "content": "What is the weather?"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "alerts": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
OTHER: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
EXPECTED_ARGS = {"city": "sim-city", "days": 1, "unit": "celsius", "alerts": True}


def test_text_repeats_with_a_space() -> None:
    text = "".join(sim_token(i) for i in range(25))
    assert "drain. Sluice relays" in text
    assert ".Sluice" not in text


async def test_n_choices_streamed(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="sim", messages=MSGS, n=2, stream=True)
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
    assert texts == {0: TEXT, 1: TEXT}
    assert finishes == {0: "stop", 1: "stop"}


async def test_n_choices_not_streamed(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(model="sim", messages=MSGS, n=2, max_tokens=3)
    assert [c.index for c in done.choices] == [0, 1]
    assert [c.message.content for c in done.choices] == [TEXT[: len("Sluice relays tokens")]] * 2
    assert [c.finish_reason for c in done.choices] == ["length", "length"]
    assert done.usage is not None and done.usage.completion_tokens == 6


async def test_tool_call_round_trip_streamed(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="sim", messages=MSGS, tools=[WEATHER, OTHER], tool_choice="required",
            stream=True,
        )  # fmt: skip
        call_id, name, pieces, finish = None, None, [], None
        async for chunk in stream:
            for choice in chunk.choices:
                assert choice.delta.content in (None, "")
                for call in choice.delta.tool_calls or ():
                    assert call.index == 0
                    call_id = call.id or call_id
                    if call.function and call.function.name:
                        name = call.function.name
                    if call.function and call.function.arguments:
                        pieces.append(call.function.arguments)
                finish = choice.finish_reason or finish
        assert call_id is not None and call_id.startswith("call_")
        assert name == "get_weather"
        assert len(pieces) > 1
        assert json.loads("".join(pieces)) == EXPECTED_ARGS
        assert finish == "tool_calls"

        follow_up = [
            *MSGS,
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function",
                "function": {"name": name, "arguments": "".join(pieces)}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
        ]  # fmt: skip
        answer = await oa.chat.completions.create(
            model="sim", messages=follow_up, tools=[WEATHER], tool_choice="required",
            stream=True,
        )  # fmt: skip
        text, finish = "", None
        async for chunk in answer:
            for choice in chunk.choices:
                assert not choice.delta.tool_calls
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert (text, finish) == (TEXT, "stop")


@pytest.mark.parametrize(
    ("messages", "tool_choice", "called"),
    [
        ([{"role": "user", "content": "please call get_time now"}], None, "get_time"),
        (MSGS, {"type": "function", "function": {"name": "get_time"}}, "get_time"),
        (MSGS, "required", "get_weather"),
        (MSGS, None, None),
        ([{"role": "user", "content": "call get_time"}], "none", None),
        ([{"role": "user", "content": "call get_date"}], None, None),
    ],
    ids=["asked-in-text", "named", "required", "auto", "none", "undeclared"],
)  # fmt: skip
async def test_when_the_simulator_calls_a_tool(
    gateway: GatewayFactory, messages: Any, tool_choice: Any, called: str | None
) -> None:
    client = await gateway(models=[SIM])
    extra: Any = {} if tool_choice is None else {"tool_choice": tool_choice}
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(
            model="sim", messages=messages, tools=[WEATHER, OTHER], **extra
        )
    (choice,) = done.choices
    if called is None:
        assert choice.message.content == TEXT
        assert not choice.message.tool_calls
        assert choice.finish_reason == "stop"
        return
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == called  # type: ignore[union-attr]
    expected = EXPECTED_ARGS if called == "get_weather" else {}
    assert json.loads(call.function.arguments) == expected  # type: ignore[union-attr]


async def test_stream_options_without_stream_is_400(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        with pytest.raises(openai.BadRequestError) as info:
            await oa.chat.completions.create(
                model="sim", messages=MSGS, stream_options={"include_usage": True}
            )
    assert info.value.param == "stream_options"  # type: ignore[attr-defined]
    body: Any = info.value.body
    assert body["message"].startswith(
        "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    )
