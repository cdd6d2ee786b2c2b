"""Every client dialect served from a Bedrock upstream (tests/fake_bedrock.py),
through the official SDKs, streamed and not, with tools; what the Converse
request carries; stop reasons, usage, errors (HTTP statuses before the first
token, exception messages after it), retries, the API-key auth, metrics and
backpressure."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.fake_anthropic import anthropic_sdk
from tests.fake_bedrock import (
    API_KEY,
    FakeBedrock,
    aws_environment,
    bedrock_model,
    block_stop,
    converse_response,
    event,
    exception,
    message_start,
    message_stop,
    metadata,
    script,
    start_fake_bedrock,
    text_delta,
    text_events,
    tool_events,
)
from tests.helpers import GatewayFactory, sdk, upstream_plateau
from tests.rawclient import RawSSEClient

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
ARGS = {"city": "São Paulo", "when": ["today", "tomorrow"]}
TOOLS: Any = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "description": "Weather by city",
                         "input_schema": TOOLS[0]["function"]["parameters"]}]  # fmt: skip


@pytest.fixture
async def fake(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeBedrock:
    aws_environment(monkeypatch)
    return await start_fake_bedrock(aiohttp_server)


async def test_chat_stream_text_usage_and_the_converse_request(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    fake.script = script(text_events(["Hel", "lo"], "max_tokens"))
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="nova",
            messages=[{"role": "system", "content": "Be terse."}, *MESSAGES],
            stream=True,
            stream_options={"include_usage": True},
            stop=["END"],
            max_tokens=50,
            temperature=0.5,
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 2)
    assert fake.records[0].body == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "Be terse."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "stopSequences": ["END"]},
    }


async def test_stop_reasons(gateway: GatewayFactory, fake: FakeBedrock) -> None:
    client = await gateway(models=[bedrock_model(fake)])
    for reason, finish in [("guardrail_intervened", "content_filter"),
                           ("content_filtered", "content_filter"), ("stop_sequence", "stop"),
                           ("end_turn", "stop"), ("malformed_model_output", "stop")]:  # fmt: skip
        fake.script = script(text_events(["x"], reason))
        async with sdk(client) as oa:
            stream = await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
            chunks = [c async for c in stream]
        assert chunks[-1].choices[0].finish_reason == finish, reason


async def test_chat_stream_tool_call(gateway: GatewayFactory, fake: FakeBedrock) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake.script = script(tool_events("get_weather", arguments, 7, "tooluse_abc"))
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="nova", messages=MESSAGES, stream=True, tools=TOOLS, tool_choice="required"
        )
        chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "tooluse_abc" and calls[0].function is not None
    assert calls[0].function.name == "get_weather" and {tc.index for tc in calls} == {0}
    assembled = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert orjson.loads(assembled) == ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = fake.records[0].body["toolConfig"]
    assert sent == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather by city",
                                "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}}],
        "toolChoice": {"any": {}},
    }  # fmt: skip


async def test_messages_stream_with_tools_and_a_tool_turn(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake.script = script(tool_events("get_weather", arguments, 5, "tooluse_1"))
    client = await gateway(models=[bedrock_model(fake)])
    async with (
        anthropic_sdk(client) as ac,
        ac.messages.stream(
            model="nova", max_tokens=64, messages=MESSAGES, tools=ANTHROPIC_TOOLS,
            system="Be terse.", stop_sequences=["END"],
        ) as stream,
    ):  # fmt: skip
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check."  # type: ignore[union-attr]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.id == "tooluse_1" and tool.input == ARGS
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 20)
    # The tool turn goes back as toolUse and toolResult blocks.
    fake.script = script(text_events(["Sunny."]))
    async with anthropic_sdk(client) as ac:
        second = await ac.messages.create(
            model="nova", max_tokens=64, tools=ANTHROPIC_TOOLS, stream=True,
            messages=[*MESSAGES,
                      {"role": "assistant", "content": [
                          {"type": "tool_use", "id": "tooluse_1", "name": "get_weather",
                           "input": ARGS}]},
                      {"role": "user", "content": [
                          {"type": "tool_result", "tool_use_id": "tooluse_1", "content": "sunny",
                           "is_error": False}]}],
        )  # fmt: skip
        kinds = [e.type async for e in second]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    sent = fake.records[1].body["messages"]
    assert sent[1]["content"] == [
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": ARGS}}
    ]
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}}
    ]
    first = fake.records[0].body
    assert first["system"] == [{"text": "Be terse."}]
    assert first["inferenceConfig"] == {"maxTokens": 64, "stopSequences": ["END"]}


async def test_responses_stream_and_not(gateway: GatewayFactory, fake: FakeBedrock) -> None:
    arguments = orjson.dumps(ARGS).decode()
    fake.script = script(tool_events("get_weather", arguments, 3, "tooluse_r"))
    client = await gateway(models=[bedrock_model(fake)])
    tools: Any = [{"type": "function", "name": "get_weather",
                   "parameters": TOOLS[0]["function"]["parameters"]}]  # fmt: skip
    async with sdk(client) as oa:
        async with oa.responses.stream(model="nova", input="weather?", tools=tools) as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        calls = [item for item in final.output if item.type == "function_call"]
        assert calls[0].call_id == "tooluse_r" and orjson.loads(calls[0].arguments) == ARGS
        assert final.output_text == "Let me check." and final.usage is not None
        assert final.usage.input_tokens == 11
        fake.script = script(text_events(["cut"], "guardrail_intervened"))
        filtered = [e async for e in await oa.responses.create(model="nova", input="hi",
                                                                stream=True)]  # fmt: skip
        assert filtered[-1].type == "response.incomplete"
        details = filtered[-1].response.incomplete_details
        assert details is not None and details.reason == "content_filter"
        fake.response = converse_response([{"text": "Plain."}])
        plain = await oa.responses.create(model="nova", input="hi", instructions="be brief")
    assert plain.status == "completed" and plain.output_text == "Plain."
    assert fake.records[-1].body["system"] == [{"text": "be brief"}]


async def test_not_streamed_in_each_dialect(gateway: GatewayFactory, fake: FakeBedrock) -> None:
    fake.response = converse_response(
        [{"text": "Sunny."},
         {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": ARGS}}],
        "tool_use",
    )  # fmt: skip
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        chat = await oa.chat.completions.create(model="nova", messages=MESSAGES, tools=TOOLS)
    assert chat.choices[0].finish_reason == "tool_calls"
    assert chat.choices[0].message.content == "Sunny."
    assert chat.usage is not None and chat.usage.completion_tokens == 3
    async with anthropic_sdk(client) as ac:
        message = await ac.messages.create(model="nova", max_tokens=10, messages=MESSAGES)
    assert message.stop_reason == "tool_use" and message.content[1].type == "tool_use"
    assert message.usage.input_tokens == 12
    assert fake.paths[-1] == "/model/anthropic.claude-up-v1%3A0/converse"


async def test_exception_message_mid_stream_is_an_error_event(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    fake.script = script([message_start(), text_delta(0, "Hel"),
                          exception("modelStreamErrorException", "The model broke")])  # fmt: skip
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as failed:
            async for _ in stream:
                pass
    assert "The model broke" in failed.value.message
    fake.script = script([message_start(), text_delta(0, "Hel"),
                          exception("throttlingException", "Slow down")])  # fmt: skip
    async with anthropic_sdk(client) as ac:
        with pytest.raises(anthropic.APIStatusError) as limited:
            async with ac.messages.stream(model="nova", max_tokens=5, messages=MESSAGES) as s:
                await s.get_final_message()
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_throttled_before_content_is_retried(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    fake.queue = [
        script([], status=429),
        script([message_start(), exception("throttlingException")]),
        script([message_start(), exception("serviceUnavailableException")]),
    ]
    fake.script = script(text_events(["ok"]))
    client = await gateway(models=[bedrock_model(fake, retries=3, retry_backoff_s=0.01)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "ok" and len(fake.records) == 4
    fake.queue = [script([], status=400, error_body={"message": "Malformed input request"})]
    async with sdk(client) as oa:
        with pytest.raises(openai.BadRequestError) as rejected:
            await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
    assert "Malformed input request" in rejected.value.message
    assert "ValidationException" in rejected.value.message
    assert len(fake.records) == 5  # not retried


async def test_cut_streams_and_an_empty_block(gateway: GatewayFactory, fake: FakeBedrock) -> None:
    # A block Bedrock starts with no content: an empty text block, indexes kept.
    fake.script = script([message_start(), event("contentBlockStart", {
        "contentBlockIndex": 0, "start": {}}), block_stop(0), text_delta(1, "hi"), block_stop(1),
        message_stop(), metadata()])  # fmt: skip
    client = await gateway(models=[bedrock_model(fake)])
    async with (
        anthropic_sdk(client) as ac,
        ac.messages.stream(model="nova", max_tokens=5, messages=MESSAGES) as s,
    ):
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["text", "text"]
    assert final.content[1].text == "hi"  # type: ignore[union-attr]
    # Cut before its metadata event (even after messageStop): an error, never a clean end.
    start = [message_start(), text_delta(0, "Hel")]
    for events in (start, [*start, block_stop(0), message_stop()]):
        fake.script = script(events)
        async with sdk(client) as oa:
            stream = await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
            with pytest.raises(openai.APIError) as cut:
                async for _ in stream:
                    pass
        assert "ended before the stream was complete" in cut.value.message


async def test_bedrock_api_key_is_a_bearer_token(
    gateway: GatewayFactory, fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, metrics: Any
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)
    client = await gateway(models=[bedrock_model(fake)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
        assert [c async for c in stream]
    assert fake.headers[0]["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in fake.headers[0]
    families = {m.name: m for m in metrics.registry.collect()}
    terminations = families["sluice_stream_terminations"].samples
    assert any(s.labels.get("provider") == "bedrock" and s.labels.get("reason") == "completed"
               for s in terminations)  # fmt: skip


async def test_stalled_client_pauses_the_bedrock_upstream(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    n = 8_000
    pad = "x" * 200
    events = [message_start(), *(text_delta(0, f"{i} {pad}") for i in range(n)),
              block_stop(0), message_stop(), metadata(output_tokens=n)]  # fmt: skip
    fake.script = script(events, sndbuf=16384)
    offered = sum(len(e) for e in events)
    client = await gateway(models=[bedrock_model(fake)], stream={"downstream_buffer_bytes": 65536})
    raw = await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions",
        {"model": "nova", "stream": True, "messages": MESSAGES},
    )  # type: ignore[arg-type]  # fmt: skip
    try:
        assert raw.status == 200
        first = await raw.events(limit=1)
        ahead = await upstream_plateau(fake)
        print(f"\nBedrock upstream got {ahead} bytes out of {offered} ahead of a stalled client")
        assert ahead < 1 << 20
        assert not fake.records[0].completed
        rest = await raw.events()
    finally:
        raw.close()
    events_out = first + rest
    assert events_out[-1] == b"data: [DONE]"
    texts = [e for e in events_out if b'"content":"' in e and b"x" * 200 in e]
    assert len(texts) == n and f'"content":"{n - 1} '.encode() in texts[-1]
    assert fake.records[0].completed


async def test_hostile_bodies_and_untranslatable_requests(
    gateway: GatewayFactory, fake: FakeBedrock
) -> None:
    client = await gateway(models=[bedrock_model(fake, max_message_bytes=4096)])
    bad_crc = bytearray(text_delta(0, "lo"))
    bad_crc[-1] ^= 1
    huge = text_delta(0, "x" * 5000)
    cases = [
        ([message_start(), text_delta(0, "Hel"), bytes(bad_crc)], 200),  # an error event
        ([message_start(), huge[:12]], 502),  # refused from its prelude, before content
        ([message_start(), text_delta(0, "Hel"), b"\x00\x00"], 200),  # cut inside a message
    ]
    async with sdk(client) as oa:
        for events, status in cases:
            fake.script = script(events)
            response = await client.post("/v1/chat/completions", json={
                "model": "nova", "stream": True, "messages": MESSAGES})  # fmt: skip
            body = await response.text()
            assert response.status == status, body
            assert "upstream_protocol_error" in body and "[DONE]" not in body
        fake.script = script(text_events(["ok"]), content_type="text/event-stream")
        with pytest.raises(openai.APIStatusError) as not_eventstream:
            await oa.chat.completions.create(model="nova", messages=MESSAGES, stream=True)
        assert not_eventstream.value.status_code == 502
        fake.response = {"output": {"message": {"content": "not a list"}}}
        with pytest.raises(openai.APIStatusError) as malformed:
            await oa.chat.completions.create(model="nova", messages=MESSAGES)
        assert malformed.value.status_code == 502
        sent = len(fake.records)
        image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        for stream in (True, False):
            with pytest.raises(openai.BadRequestError) as by_url:
                await oa.chat.completions.create(
                    model="nova", stream=stream,
                    messages=[{"role": "user", "content": [image]}],
                )  # fmt: skip
            assert "base64" in by_url.value.message
        assert len(fake.records) == sent  # refused before anything was sent
