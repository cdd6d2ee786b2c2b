"""The Python agent frameworks people point at Sluice, run as their docs show
on their default paths, streamed, against Sluice's simulator and against a
real model (llama.cpp's server with SmolLM2-135M-Instruct behind an
in-process gateway: the ``real_model`` fixture):

- the OpenAI Agents SDK (``openai-agents``): one ``@function_tool`` and
  ``Runner.run_streamed``, the whole tool round trip (the model calls the
  tool, the SDK runs it and sends the result back, the model answers);
- LangChain ``ChatOpenAI(use_responses_api=True)`` with ``reasoning`` (which
  Sluice answered with a 400 before), and with ``bind_tools``: the call, then
  the tool result sent back.

Each test takes a :class:`Target`. The simulator calls a declared function
when the last user message says ``call <name>`` and answers a tool result with
its text (README, "The simulator honours..."); its text is known.

The real model's text is not known in advance, but at temperature 0 it is
greedy, so the expected text is what the server itself answers the same
Chat Completions messages (:meth:`Target.expected`): the text through the
SDK, Sluice's Responses translation and back must equal it. A 135M model
does not call tools on its own, and llama-cpp-python's server ignores
``tool_choice: "required"`` (it only changes anything when it *names* a
function: the server then constrains the output with a grammar made from the
function's JSON schema and answers with that call). So against the real model
the tool is forced by name (``tool_choice``), and what is asserted is the
shape of the round trip (one call of the named tool with a string ``city``,
the SDK runs it, the result goes back, the answer is text equal to the
server's own answer to the same conversation), not the model's judgement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
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
MAX_TOKENS = 24
"""Every request's length cap (``max_output_tokens``): the real model's
answers stay short; the simulator's (12 tokens) are below it."""
INSTRUCTIONS = "Answer briefly."
ASK_TOOL = "call get_weather for Paris"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the clients are pointed."""

    base_url: str
    """The OpenAI base URL (``http://host:port/v1``)."""
    model: str
    text: str | None
    """The exact text every answer must be; ``None``: the server's own answer
    (:meth:`expected`)."""
    server_url: str | None = None
    """A real model's server, straight (its ``/v1`` base), for :meth:`expected`."""

    @property
    def force_tools(self) -> bool:
        """Name the tool in ``tool_choice`` (the real model calls none unasked)."""
        return self.server_url is not None

    async def expected(self, messages: list[dict[str, Any]]) -> str:
        """The text an answer to these Chat Completions ``messages`` must be:
        the simulator's, or the real server's own greedy answer, capped at
        :data:`MAX_TOKENS`."""
        if self.text is not None:
            return self.text
        assert self.server_url is not None
        async with openai.AsyncOpenAI(base_url=self.server_url, api_key="x") as direct:
            done = await direct.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=MAX_TOKENS
            )  # type: ignore[call-overload]
        text = done.choices[0].message.content or ""
        assert text.strip(), "the server said nothing"
        return str(text)


@pytest.fixture(params=["sim", "real"])
async def target(request: pytest.FixtureRequest, gateway: GatewayFactory) -> Target:
    if request.param == "sim":
        client = await gateway(models=[SIM])
        return Target(str(client.make_url("/v1")), "sim", SIM_TEXT)
    real = request.getfixturevalue("real_model")
    client = await gateway(models=[real.gateway_model()])
    return Target(str(client.make_url("/v1")), "smollm2", None, real.url)


def _openai(target: Target) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=target.base_url, api_key="unused", max_retries=0)


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """An assistant message with one tool call, as Sluice sends it upstream."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": "", "tool_calls": [call]}


async def test_agents_sdk_function_tool_round_trip_streamed(target: Target) -> None:
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"sunny in {city}"

    settings = ModelSettings(temperature=0, max_tokens=MAX_TOKENS)
    if target.force_tools:
        settings = ModelSettings(temperature=0, max_tokens=MAX_TOKENS, tool_choice="get_weather")
    agent = Agent(
        name="weather",
        instructions=INSTRUCTIONS,
        tools=[get_weather],
        model=target.model,
        model_settings=settings,
    )
    deltas: list[str] = []
    items: list[str] = []
    calls: list[Any] = []
    async with _openai(target) as client:
        config = RunConfig(
            model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True
        )
        result = Runner.run_streamed(agent, input=ASK_TOOL, run_config=config)
        async for event in result.stream_events():
            data = event.data if event.type == "raw_response_event" else None
            if data is not None and data.type == "response.output_text.delta":
                deltas.append(data.delta)
            elif event.type == "run_item_stream_event":
                items.append(event.item.type)
                if event.item.type == "tool_call_item":
                    calls.append(event.item.raw_item)
    assert items == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert len(cities) == 1 and isinstance(cities[0], str)
    if target.text is not None:
        assert cities == [CITY]
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": cities[0]}
    conversation = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": ASK_TOOL},
        _tool_call(call.call_id, call.name, call.arguments),
        {"role": "tool", "tool_call_id": call.call_id, "content": f"sunny in {cities[0]}"},
    ]
    assert "".join(deltas) == await target.expected(conversation)
    assert result.final_output == "".join(deltas)


def _chat(target: Target, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=target.model,
        base_url=target.base_url,
        api_key="unused",  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
        temperature=0,
        max_tokens=MAX_TOKENS,  # type: ignore[call-arg]
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
    assert "".join(pieces) == await target.expected([{"role": "user", "content": "hi"}])


async def test_langchain_responses_bind_tools_round_trip_streamed(target: Target) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    chat = _chat(target).bind_tools([get_weather])
    ask = chat
    if target.force_tools:
        ask = _chat(target).bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage(ASK_TOOL)
    called = await _streamed(ask, [question])
    assert [call["name"] for call in called.tool_calls] == ["get_weather"]
    call = called.tool_calls[0]
    assert isinstance(call["args"].get("city"), str)
    if target.text is not None:
        assert call["args"] == {"city": CITY}
    output = get_weather.invoke(call["args"])
    result = ToolMessage(output, tool_call_id=call["id"])
    answer = await _streamed(chat, [question, called, result])
    assert not answer.tool_calls
    sent = called.additional_kwargs.get("tool_calls") or called.tool_call_chunks
    arguments = sent[0]["args"] if "args" in sent[0] else sent[0]["function"]["arguments"]
    conversation = [
        {"role": "user", "content": ASK_TOOL},
        _tool_call(call["id"] or "", "get_weather", arguments),
        {"role": "tool", "tool_call_id": call["id"], "content": output},
    ]
    assert answer.text == await target.expected(conversation)
