"""``POST /v1/responses`` with the official openai SDK as the client: the
simulator, a Chat-Completions-only upstream and an Anthropic upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.providers.sim import sim_token
from tests.fake_anthropic import FakeAnthropic, anthropic_model, text_events, wire
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk
from tests.rawclient import RawSSEClient

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 1, "output_tokens": 8}
SIM_TEXT = "".join(sim_token(i) for i in range(8))
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


async def _events(client: Any, **create: Any) -> list[Any]:
    async with sdk(client) as oa:
        stream = await oa.responses.create(stream=True, **create)
        return [event async for event in stream]


def _check_sequence(events: list[Any]) -> None:
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[1].type == "response.in_progress"


async def test_streamed_text_from_the_simulator(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    events = await _events(client, model="sim", input="hi")
    _check_sequence(events)
    types = [e.type for e in events]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == SIM_TEXT
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == SIM_TEXT
    assert final.usage is not None and final.usage.output_tokens == 8


async def test_stream_helper_and_non_streaming(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        async with oa.responses.stream(model="sim", input="hi") as stream:
            texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        plain = await oa.responses.create(model="sim", input="hi", instructions="be brief")
    assert "".join(texts) == SIM_TEXT == final.output_text
    assert plain.status == "completed" and plain.output_text == SIM_TEXT
    assert plain.instructions == "be brief"
    assert plain.usage is not None and plain.usage.total_tokens > 8


async def test_max_output_tokens_is_incomplete(gateway: GatewayFactory) -> None:
    client = await gateway(models=[SIM])
    events = await _events(client, model="sim", input="hi", max_output_tokens=3)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].response.output_text == "".join(sim_token(i) for i in range(3))


@pytest.mark.parametrize("stream", [True, False])
async def test_function_call_round_trip(gateway: GatewayFactory, stream: bool) -> None:
    client = await gateway(models=[SIM])
    async with sdk(client) as oa:
        if stream:
            async with oa.responses.stream(
                model="sim", input="weather?", tools=TOOLS, tool_choice="required"
            ) as s:
                kinds = [e.type async for e in s]
                first = await s.get_final_response()
            assert "response.function_call_arguments.delta" in kinds
            assert "response.function_call_arguments.done" in kinds
        else:
            first = await oa.responses.create(
                model="sim", input="weather?", tools=TOOLS, tool_choice="required"
            )
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert "city" in calls[0].arguments
        second = await oa.responses.create(
            model="sim",
            tools=TOOLS,
            input=[
                {"role": "user", "content": "weather?"},
                {
                    "type": "function_call",
                    "call_id": calls[0].call_id,
                    "name": calls[0].name,
                    "arguments": calls[0].arguments,
                },
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
            ],
        )
    assert second.status == "completed"
    assert second.output_text  # the simulator answers in text after a tool result


async def test_chat_only_upstream_gets_a_chat_request(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("Hel")), sse(chunk("lo")), sse("[DONE]")])
    client = await gateway(models=[openai_model(fake_openai)])
    events = await _events(
        client, model="up", input="hi", instructions="sys", max_output_tokens=50, temperature=0.5
    )
    assert events[-1].response.output_text == "Hello"
    sent = fake_openai.records[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
    ]
    assert (
        sent["max_tokens"] == 50
        and "max_completion_tokens" not in sent
        and sent["temperature"] == 0.5
    )
    assert sent["stream"] is True and sent["model"] == "up-model"


async def test_failure_mid_stream_is_response_failed(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("partial"))], then="close")
    client = await gateway(models=[openai_model(fake_openai)])
    events = await _events(client, model="up", input="hi")
    types = [e.type for e in events]
    assert "response.completed" not in types
    assert types[-1] == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "upstream_connect_error"
    _check_sequence(events)


async def test_anthropic_upstream(gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script = Script(events=wire(text_events(["Bon", "jour"])))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    events = await _events(client, model="claude", input="hi")
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Bonjour"
    assert events[-1].response.usage.input_tokens > 0
    async with sdk(client) as oa:
        plain = await oa.responses.create(model="claude", input="hi", max_output_tokens=64)
    assert plain.output_text == "hi there"  # the fake's non-streaming answer
    sent = fake_anthropic.records[-1].body
    assert sent["max_tokens"] == 64 and sent["messages"][0]["role"] == "user"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True, "store": False}, "store"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"input": [{"type": "image_generation_call"}]}, "input[0]"),
    ],
)
async def test_unsupported_fields_are_400_naming_them(
    gateway: GatewayFactory, extra: dict[str, Any], param: str
) -> None:
    client = await gateway(models=[SIM])
    resp = await client.post("/v1/responses", json={"model": "sim", "input": "hi", **extra})
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == param


async def test_a_stalled_responses_client_pauses_the_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    n = 20_000
    fake_openai.script = Script(
        events=[sse(chunk(f"{i} " + "x" * 200)) for i in range(n)] + [sse("[DONE]")],
        sndbuf=16384,
    )
    client = await gateway(models=[openai_model(fake_openai, stream_usage=False)])
    raw = await RawSSEClient.open(
        client.server.host,
        client.server.port,
        "/v1/responses",
        {"model": "up", "input": "hi", "stream": True},  # type: ignore[arg-type]
    )
    try:
        assert raw.status == 200
        await raw.events(limit=3)
        last, same = -1, 0
        while same < 5:  # until the upstream stops making progress
            await asyncio.sleep(0.1)
            now = fake_openai.records[0].bytes_out
            same, last = (same + 1 if now == last else 0), now
        assert last < 1 << 20  # bounded, as for /v1/chat/completions
        assert not fake_openai.records[0].completed
        rest = await raw.events()
    finally:
        raw.close()
    assert rest[-1].startswith(b"event: response.completed")
    assert fake_openai.records[0].completed
