"""The Gemini provider (gateway/providers/gemini.py) against a fake Gemini API
upstream on loopback (tests/fake_gemini.py), read by every client dialect's
official SDK: Chat Completions and Responses (openai), Messages (anthropic).
Text, whole function calls, system prompt, stop sequences, max tokens,
finish reasons, usage, mid-stream errors, retries and fallbacks."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from gateway.metrics import Metrics
from tests.fake_anthropic import anthropic_sdk
from tests.fake_gemini import (
    USAGE,
    FakeGemini,
    call,
    gemini_error,
    gemini_model,
    response,
    text,
    text_events,
    tool_events,
    wire,
)
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
ARGS = {"city": "Zürich", "days": [1, 2]}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_chat_stream_text_usage_and_request(
    gateway: GatewayFactory, fake_gemini: FakeGemini, metrics: Metrics
) -> None:
    fake_gemini.script = Script(events=wire(text_events(["Hel", "lo", " wörld 🌍"])))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(
            model="gem",
            messages=[{"role": "system", "content": "be brief"}, *MESSAGES],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=50,
            stop=["END"],
            temperature=0.3,
        )
        chunks = [c async for c in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Hello wörld 🌍"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 9
    assert chunks[-1].usage.completion_tokens == 4
    sent = fake_gemini.records[0].body
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert sent["generationConfig"] == {
        "maxOutputTokens": 50, "stopSequences": ["END"], "temperature": 0.3
    }  # fmt: skip
    assert fake_gemini.paths[0] == "/v1beta/models/gemini-up:streamGenerateContent"
    assert fake_gemini.queries[0] == {"alt": "sse"}
    assert fake_gemini.headers[0]["x-goog-api-key"] == "test-gemini-key"
    assert "authorization" not in fake_gemini.headers[0]
    labels = {"model": "gem", "provider": "gemini"}
    assert (
        metrics.registry.get_sample_value(
            "sluice_stream_terminations_total", {**labels, "reason": "completed"}
        )
        == 1
    )
    assert metrics.registry.get_sample_value("sluice_output_tokens_total", labels) == 4


async def test_tool_call_reaches_every_dialect_whole(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script = Script(events=wire(tool_events("get_weather", ARGS)))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(
            model="gem", messages=MESSAGES, tools=TOOLS, tool_choice="required", stream=True
        )
        chunks = [c async for c in stream]
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert len(calls) == 1 and calls[0].function is not None
        assert calls[0].function.name == "get_weather" and calls[0].id
        assert orjson.loads(calls[0].function.arguments or "") == ARGS
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        responses_tools: Any = [{"type": "function", **TOOLS[0]["function"]}]
        async with oc.responses.stream(model="gem", input="hi", tools=responses_tools) as rs:
            async for _ in rs:
                pass
            final = await rs.get_final_response()
        items = [i for i in final.output if i.type == "function_call"]
        assert items and orjson.loads(items[0].arguments) == ARGS
    async with (
        anthropic_sdk(client) as ac,
        ac.messages.stream(
            model="gem",
            max_tokens=64,
            messages=MESSAGES,
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        ) as ms,
    ):
        message = await ms.get_final_message()
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and uses[0].input == ARGS and message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 9 and message.usage.output_tokens == 4
    sent = fake_gemini.records[0].body
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"
    assert declaration["parametersJsonSchema"] == TOOLS[0]["function"]["parameters"]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_tool_turn_history_is_translated(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    client = await gateway(models=[gemini_model(fake_gemini)])
    history: Any = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Bern"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'},
    ]  # fmt: skip
    async with sdk(client) as oc:
        await oc.chat.completions.create(model="gem", messages=history, tools=TOOLS)
    contents = fake_gemini.records[0].body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Bern"}, "id": "call_1"}}
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 3}, "id": "call_1"}}
        ],
    }


@pytest.mark.parametrize(
    ("finish", "openai_reason", "anthropic_reason"),
    [("SAFETY", "content_filter", "refusal"), ("RECITATION", "content_filter", "refusal"),
     ("MAX_TOKENS", "length", "max_tokens")],
)  # fmt: skip
async def test_finish_reasons(
    gateway: GatewayFactory,
    fake_gemini: FakeGemini,
    finish: str,
    openai_reason: str,
    anthropic_reason: str,
) -> None:
    fake_gemini.script = Script(events=wire(text_events(["partial"], finish)))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason == openai_reason
    async with anthropic_sdk(client) as ac:
        message = await ac.messages.create(model="gem", max_tokens=8, messages=MESSAGES)
    assert message.stop_reason == "end_turn"  # the non-streaming answer is `whole`
    fake_gemini.whole = response([text("x")], finish, USAGE)
    async with anthropic_sdk(client) as ac:
        message = await ac.messages.create(model="gem", max_tokens=8, messages=MESSAGES)
    assert message.stop_reason == anthropic_reason
    fake_gemini.script = Script(events=wire(text_events(["partial"], finish)))
    async with sdk(client) as oc:
        whole = await oc.responses.create(model="gem", input="hi")
        events = [e async for e in await oc.responses.create(model="gem", input="hi", stream=True)]
        assert events[-1].type == "response.incomplete"
        streamed = events[-1].response
    reason = "content_filter" if openai_reason == "content_filter" else "max_output_tokens"
    for result in (whole, streamed):
        assert result.status == "incomplete" and result.incomplete_details is not None
        assert result.incomplete_details.reason == reason


async def test_blocked_prompt_is_content_filter(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE}
    fake_gemini.script = Script(events=wire([blocked]))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["content_filter"]


async def test_mid_stream_error_is_an_error_event(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    events = [response([text("partial")]), gemini_error(500, "INTERNAL", "boom")]
    fake_gemini.script = Script(events=wire(events))
    client = await gateway(models=[gemini_model(fake_gemini)])
    seen: list[str] = []
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="boom"):
            async for c in stream:
                seen.append(c.choices[0].delta.content or "")
    assert "".join(seen) == "partial"


async def test_stream_cut_before_finish_is_not_a_clean_end(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script = Script(events=wire([response([text("partial")])]))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="ended before"):
            async for _ in stream:
                pass


@pytest.mark.parametrize("status", [429, 500, 503, 504])
async def test_retryable_status_is_retried(
    gateway: GatewayFactory, fake_gemini: FakeGemini, status: int
) -> None:
    fake_gemini.queue = [Script(status=status)]
    client = await gateway(models=[gemini_model(fake_gemini, retries=1, retry_backoff_s=0.01)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        content = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert content == "hi" and len(fake_gemini.records) == 2


async def test_falls_back_to_another_provider(
    gateway: GatewayFactory, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    fake_gemini.script = Script(status=503, error_body=gemini_error())
    fake_openai.script = Script(events=[sse(chunk("from openai")), sse("[DONE]")])
    models = [gemini_model(fake_gemini, fallbacks=["up"]), openai_model(fake_openai)]
    client = await gateway(models=models)
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        content = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert content == "from openai"


async def test_non_streaming_chat_and_error_status(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.whole = response([text("Sure."), call("get_weather", ARGS)], "STOP", USAGE)
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        result = await oc.chat.completions.create(model="gem", messages=MESSAGES, tools=TOOLS)
        choice = result.choices[0]
        assert choice.message.content == "Sure." and choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls is not None
        assert orjson.loads(choice.message.tool_calls[0].function.arguments) == ARGS  # type: ignore[union-attr]
        assert result.usage is not None and result.usage.total_tokens == 13
        assert fake_gemini.paths[0] == "/v1beta/models/gemini-up:generateContent"
        fake_gemini.script = Script(status=400, error_body=gemini_error(400, "INVALID_ARGUMENT",
                                                                         "bad schema"))  # fmt: skip
        with pytest.raises(openai.BadRequestError, match="bad schema"):
            await oc.chat.completions.create(model="gem", messages=MESSAGES)


SIGNATURE = "c2lnbmF0dXJl+/8="
"""A Gemini ``thoughtSignature`` (base64 with ``+``, ``/`` and padding)."""


async def test_thought_signature_survives_a_tool_turn(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    """Gemini asks for a call's ``thoughtSignature`` back with the call; it
    rides in the tool call's id, which every client sends back unchanged."""
    part = {**call("get_weather", ARGS), "thoughtSignature": SIGNATURE}
    fake_gemini.script = Script(events=wire([response([part], "STOP", USAGE)]))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(
            model="gem", messages=MESSAGES, tools=TOOLS, stream=True
        )
        calls = [
            tc async for c in stream if c.choices for tc in c.choices[0].delta.tool_calls or ()
        ]
        call_id = calls[0].id
        assert call_id is not None and set(call_id) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
        )
        history: Any = [
            *MESSAGES,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": orjson.dumps(ARGS).decode()}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]  # fmt: skip
        await oc.chat.completions.create(model="gem", messages=history, tools=TOOLS)
    model_turn, answer = fake_gemini.records[1].body["contents"][1:]
    assert model_turn["parts"][0]["thoughtSignature"] == SIGNATURE
    sent_id = model_turn["parts"][0]["functionCall"]["id"]
    assert answer["parts"][0]["functionResponse"]["id"] == sent_id
    assert answer["parts"][0]["functionResponse"]["response"] == {"content": "sunny"}


async def test_fields_gemini_cannot_take_are_reported(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    client = await gateway(models=[gemini_model(fake_gemini)])
    body = {"model": "gem", "messages": MESSAGES, "user": "u-1", "logprobs": True, "seed": 7}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200 and resp.headers["Sluice-Dropped-Params"] == "user, logprobs"
    assert fake_gemini.records[0].body["generationConfig"] == {"seed": 7}
    gemini_body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "generationConfig": {"topK": 3, "temperature": 0.5},
        "safetySettings": [],
    }
    resp = await client.post("/v1beta/models/gem:generateContent", json=gemini_body)
    assert resp.status == 200
    assert resp.headers["Sluice-Dropped-Params"] == "generationConfig.topK, safetySettings"
    assert fake_gemini.records[1].body["generationConfig"] == {"temperature": 0.5}


async def test_retry_delay_of_a_429_is_the_retry_after(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    """Gemini says when to retry in the body (``google.rpc.RetryInfo``), not
    in a header: it is the Retry-After retries honour and clients are told."""
    body = gemini_error(429, "RESOURCE_EXHAUSTED", "quota")
    body["error"]["details"] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
    ]
    fake_gemini.script = Script(status=429, error_body=body)
    client = await gateway(models=[gemini_model(fake_gemini, retries=2)])
    resp = await client.post("/v1/chat/completions", json={"model": "gem", "messages": MESSAGES})
    assert resp.status == 429 and resp.headers["Retry-After"] == "37"
    assert len(fake_gemini.records) == 1  # 37 s is past retry_max_backoff_s: no retry
