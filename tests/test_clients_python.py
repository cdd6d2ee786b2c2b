"""The Python agent frameworks people point at Sluice, run as their docs show
on their default paths, streamed, against Sluice's simulator:

- the OpenAI Agents SDK (``openai-agents``): one ``@function_tool`` and
  ``Runner.run_streamed``, the whole tool round trip (the model calls the
  tool, the SDK runs it and sends the result back, the model answers);
- LangChain ``ChatOpenAI(use_responses_api=True)`` with ``reasoning`` (which
  Sluice answered with a 400 before), and with ``bind_tools``: the call, then
  the tool result sent back.

Each test takes a :class:`Target` (a base URL, a model, the exact text to
expect or ``None`` for any text), so the same tests can run against another
gateway, e.g. one in front of a real model, by parametrizing ``target``.
The simulator calls a declared function when the last user message says
``call <name>`` and answers a tool result with its text (README, "The
simulator honours...").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from gateway.providers.sim import sim_token
from tests.helpers import GatewayFactory

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 1, "output_tokens": 12}
SIM_TEXT = "".join(sim_token(i) for i in range(12))
CITY = "sim-city"
"""The simulator's placeholder for a string argument named ``city``."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the clients are pointed."""

    base_url: str
    """The OpenAI base URL (``http://host:port/v1``)."""
    model: str
    text: str | None
    """The exact text every answer must be; ``None``: any non-empty text."""

    def check_text(self, text: str) -> None:
        if self.text is None:
            assert text
        else:
            assert text == self.text


@pytest.fixture
async def target(gateway: GatewayFactory) -> Target:
    client = await gateway(models=[SIM])
    return Target(str(client.make_url("/v1")), "sim", SIM_TEXT)


def _openai(target: Target) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=target.base_url, api_key="unused", max_retries=0)


async def test_agents_sdk_function_tool_round_trip_streamed(target: Target) -> None:
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"sunny in {city}"

    agent = Agent(
        name="weather", instructions="Answer briefly.", tools=[get_weather], model=target.model
    )
    deltas: list[str] = []
    items: list[str] = []
    async with _openai(target) as client:
        config = RunConfig(
            model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True
        )
        result = Runner.run_streamed(agent, input="call get_weather for Paris", run_config=config)
        async for event in result.stream_events():
            data = event.data if event.type == "raw_response_event" else None
            if data is not None and data.type == "response.output_text.delta":
                deltas.append(data.delta)
            elif event.type == "run_item_stream_event":
                items.append(event.item.type)
    assert items == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert len(cities) == 1
    if target.text is not None:
        assert cities == [CITY]
    target.check_text("".join(deltas))
    assert result.final_output == "".join(deltas)


def _chat(target: Target, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=target.model,
        base_url=target.base_url,
        api_key="unused",  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
        **options,
    )


async def _streamed(chat: Any, messages: Any) -> AIMessageChunk:
    whole: AIMessageChunk | None = None
    async for piece in chat.astream(messages):
        whole = piece if whole is None else whole + piece
    assert whole is not None
    return whole


async def test_langchain_responses_with_reasoning_streams(target: Target) -> None:
    chat = _chat(target, reasoning={"effort": "low"})
    pieces = [piece.text async for piece in chat.astream("hi")]
    assert len([p for p in pieces if p]) > 1  # streamed, not one block
    target.check_text("".join(pieces))


async def test_langchain_responses_bind_tools_round_trip_streamed(target: Target) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    chat = _chat(target).bind_tools([get_weather])
    question = HumanMessage("call get_weather for Paris")
    called = await _streamed(chat, [question])
    assert [call["name"] for call in called.tool_calls] == ["get_weather"]
    call = called.tool_calls[0]
    if target.text is not None:
        assert call["args"] == {"city": CITY}
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = await _streamed(chat, [question, called, result])
    assert not answer.tool_calls
    target.check_text(answer.text)
