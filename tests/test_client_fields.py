"""The fields real clients send by default, and what Sluice does with each:
translated where the upstream's dialect has a counterpart, dropped (and
reported: ``Sluice-Dropped-Params``, ``dropped_params`` on the log line) where
it only tunes generation, 400 where dropping would change the answer
(docs/responses.md, "Fields real clients send").

The request bodies below were captured from the clients themselves (a
logging proxy in front of Sluice): openai-agents 0.24.0 (``Runner.run_streamed``
with one ``@function_tool``), langchain-openai 1.8.1 (``ChatOpenAI(
use_responses_api=True, reasoning={"effort": "low"})``, and ``bind_tools``).
The Node clients' bodies (openai 6.49.0, ai 6.0.326 with @ai-sdk/openai
3.0.141 and @ai-sdk/anthropic 3.0.140, @anthropic-ai/sdk 1.17.0) carry no
field Sluice refused; tests/js/clients.test.mjs runs them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.dialects.dropped import HEADER
from tests.conftest import LogLines
from tests.fake_anthropic import FakeAnthropic, anthropic_model, text_events, wire
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

WEATHER_TOOL = {
    "name": "get_weather",
    "parameters": {
        "properties": {"city": {"title": "City", "type": "string"}},
        "required": ["city"],
        "title": "get_weather_args",
        "type": "object",
        "additionalProperties": False,
    },
    "strict": True,
    "type": "function",
    "description": "Weather of a city.",
}
AGENTS_FIRST = {
    "model": "up",
    "stream": True,
    "include": [],
    "input": [{"content": "call get_weather", "role": "user"}],
    "instructions": "be brief",
    "tools": [WEATHER_TOOL],
}
AGENTS_TOOL_RESULT = {
    **AGENTS_FIRST,
    "input": [
        {"content": "call get_weather", "role": "user"},
        {"arguments": '{"city":"sim-city"}', "call_id": "call_1", "name": "get_weather",
         "type": "function_call", "id": "fc_1", "status": "completed"},
        {"call_id": "call_1", "output": "sunny in sim-city", "type": "function_call_output"},
    ],
}  # fmt: skip
LANGCHAIN_REASONING = {
    "model": "up",
    "stream": True,
    "input": [{"content": "hi", "role": "user", "type": "message"}],
    "reasoning": {"effort": "low"},
}
LANGCHAIN_TOOLS = {
    "model": "up",
    "stream": True,
    "input": [{"content": "call get_weather", "role": "user", "type": "message"}],
    "tools": [{"type": "function", "name": "get_weather", "description": "Weather of a city.",
               "parameters": {"properties": {"city": {"type": "string"}},
                              "required": ["city"], "type": "object"}}],
}  # fmt: skip
STREAM = Script(events=[sse(chunk("Hel")), sse(chunk("lo")), sse("[DONE]")])


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    "body",
    [AGENTS_FIRST, AGENTS_TOOL_RESULT, LANGCHAIN_REASONING, LANGCHAIN_TOOLS],
    ids=["agents", "agents-tool-result", "langchain-reasoning", "langchain-tools"],
)
async def test_what_the_python_clients_send_is_served(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, body: dict[str, Any], stream: bool
) -> None:
    fake_openai.script = STREAM
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post("/v1/responses", json={**body, "stream": stream})
    assert resp.status == 200, await resp.text()
    await resp.read()
    sent = fake_openai.records[-1].body
    assert "include" not in sent and "reasoning" not in sent
    if "reasoning" in body:
        assert sent["reasoning_effort"] == "low"
    else:
        assert "reasoning_effort" not in sent
    # `include: []` asks for nothing: nothing was dropped.
    assert HEADER not in resp.headers


@pytest.mark.parametrize("stream", [True, False])
async def test_dropped_fields_are_named_in_a_header_and_the_log(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, log_lines: LogLines, stream: bool
) -> None:
    fake_openai.script = STREAM
    client = await gateway(models=[openai_model(fake_openai)])
    body = {
        "model": "up",
        "input": "hi",
        "stream": stream,
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "stream_options": {"include_obfuscation": False},
        "text": {"verbosity": "low"},
        "prompt_cache_key": "pk",
        "service_tier": "auto",
        "max_tool_calls": 3,
        "prompt_cache_options": {"mode": "implicit"},
    }
    resp = await client.post("/v1/responses", json=body)
    assert resp.status == 200
    await resp.read()
    expected = [
        "reasoning.summary",
        "include",
        "stream_options",
        "max_tool_calls",
        "prompt_cache_options",
    ]
    assert resp.headers[HEADER] == ", ".join(expected)
    sent = fake_openai.records[-1].body
    assert sent["reasoning_effort"] == "high" and sent["verbosity"] == "low"
    assert sent["prompt_cache_key"] == "pk" and sent["service_tier"] == "auto"
    request_id = resp.headers["X-Request-Id"]
    summary = [
        line
        for line in log_lines()
        if line.get("request_id") == request_id and line["event"] == "request"
    ]
    assert len(summary) == 1 and summary[0]["dropped_params"] == expected


async def test_structured_output_becomes_response_format(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client = await gateway(models=[openai_model(fake_openai)])
    text = {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}}
    resp = await client.post("/v1/responses", json={"model": "up", "input": "hi", "text": text})
    assert resp.status == 200
    assert (await resp.json())["text"]["format"]["name"] == "out"
    assert fake_openai.records[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format"),
    ],
)
async def test_fields_whose_loss_changes_the_answer_are_400(
    gateway: GatewayFactory, extra: dict[str, Any], param: str
) -> None:
    client = await gateway()
    resp = await client.post("/v1/responses", json={"model": "sim", "input": "hi", **extra})
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == param


async def test_reasoning_effort_becomes_anthropic_thinking(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(events=wire(text_events(["Bon", "jour"])))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    body = {
        "model": "claude",
        "input": "hi",
        "stream": True,
        "reasoning": {"effort": "low"},
        "temperature": 0.5,
        "max_output_tokens": 4096,
    }
    resp = await client.post("/v1/responses", json=body)
    assert resp.status == 200
    events = [
        orjson.loads(line[6:])
        for line in (await resp.read()).split(b"\n")
        if line.startswith(b"data: ")
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Bonjour"
    sent = fake_anthropic.records[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in sent  # Anthropic refuses a temperature with thinking
    assert resp.headers[HEADER] == "temperature"


async def test_reasoning_effort_without_room_for_thinking_is_dropped(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "medium", "max_tokens": 500, "seed": 7}  # fmt: skip
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    sent = fake_anthropic.records[-1].body
    assert "thinking" not in sent and "seed" not in sent
    assert resp.headers[HEADER] == "reasoning_effort, seed"


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (8000, "medium"), (20000, "high")])
async def test_anthropic_thinking_becomes_reasoning_effort(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, budget: int, effort: str
) -> None:
    fake_openai.script = STREAM
    client = await gateway(models=[openai_model(fake_openai)])
    body = {
        "model": "up",
        "max_tokens": 30000,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": budget},
        "top_k": 5,
    }
    resp = await client.post("/v1/messages", json=body)
    assert resp.status == 200
    assert b"message_stop" in await resp.read()
    sent = fake_openai.records[-1].body
    assert sent["reasoning_effort"] == effort and "top_k" not in sent
    assert resp.headers[HEADER] == "top_k"  # on a streamed response too
