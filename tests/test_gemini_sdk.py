"""Google's ``google-genai`` SDK as the judge of the Gemini wire format:
it reads the fake Gemini upstream's bytes directly (so the fake is real),
and it reads Sluice's Gemini-format routes (``/v1beta/models/...``) served
from every kind of provider: the Gemini fake itself, an OpenAI-compatible
fake (tool-call argument deltas gathered into a whole call), an Anthropic
fake (through the Messages translation) and the simulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fake_anthropic import FakeAnthropic, anthropic_model, tool_events
from tests.fake_anthropic import wire as anthropic_wire
from tests.fake_gemini import (
    USAGE,
    FakeGemini,
    call,
    gemini_error,
    gemini_model,
    response,
    text,
    text_events,
    wire,
)
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import SIM_FAST, GatewayFactory, openai_model
from tests.keyhelp import make_key
from tests.test_gemini_upstream import ARGS

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
            ),
        )
    ]
)


@contextlib.asynccontextmanager
async def genai_client(base_url: str, api_key: str = "client-key") -> AsyncIterator[genai.Client]:
    """The official SDK with its base URL at ``base_url`` (the v1beta API),
    its async HTTP client closed on this loop (this SDK release closes it
    from ``__del__``, on whatever loop runs then)."""
    options = types.HttpOptions(base_url=base_url, api_version="v1beta")
    client = genai.Client(api_key=api_key, http_options=options)
    try:
        yield client
    finally:
        await client._api_client._async_httpx_client.aclose()


def root_of(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/"))


async def _stream(client: genai.Client, model: str, **config: Any) -> list[Any]:
    stream = await client.aio.models.generate_content_stream(
        model=model,
        contents="hi",
        config=types.GenerateContentConfig(**config) if config else None,
    )
    return [r async for r in stream]


# -- the fake, read by the SDK directly ---------------------------------------------


async def test_sdk_reads_the_fake_directly(fake_gemini: FakeGemini) -> None:
    events = [response([text("Hel")]), response([text("lo"), call("get_weather", ARGS)]),
              response([], "STOP", USAGE)]  # fmt: skip
    fake_gemini.script = Script(events=wire(events))
    async with genai_client(fake_gemini.base_url.removesuffix("/v1beta")) as client:
        chunks = await _stream(client, "gemini-up")
        whole = await client.aio.models.generate_content(model="gemini-up", contents="hi")
    assert "".join(c.text or "" for c in chunks) == "Hello"
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == ARGS
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage.prompt_token_count == 9
    assert usage.candidates_token_count == 4
    assert whole.text == "hi there" and whole.usage_metadata is not None
    assert fake_gemini.paths == [
        "/v1beta/models/gemini-up:streamGenerateContent",
        "/v1beta/models/gemini-up:generateContent",
    ]
    sent = fake_gemini.records[0].body
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


# -- Sluice's Gemini-format routes, from every provider -----------------------------


async def test_route_streams_from_gemini_upstream(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script = Script(events=wire(text_events(["Hel", "lo"], "MAX_TOKENS")))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(
            sdk, "gem", system_instruction="be brief", max_output_tokens=20, stop_sequences=["END"]
        )
    assert "".join(c.text or "" for c in chunks) == "Hello"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage.prompt_token_count == 9
    assert usage.candidates_token_count == 4 and usage.total_token_count == 13
    sent = fake_gemini.records[0].body
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["generationConfig"]["maxOutputTokens"] == 20
    assert sent["generationConfig"]["stopSequences"] == ["END"]
    assert fake_gemini.headers[0]["x-goog-api-key"] == "test-gemini-key"  # never the client's


async def test_route_gathers_openai_tool_call_deltas(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    pieces = ['{"city": ', '"Zürich", "days"', ": [1, 2]}"]
    first = {"index": 0, "id": "call_9", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    events = [
        sse(chunk(None, role="assistant", tool_calls=[first])),
        *(sse(chunk(None, tool_calls=[{"index": 0, "function": {"arguments": p}}]))
          for p in pieces),
        sse(chunk(None, finish="tool_calls")),
        sse({**chunk(None), "choices": [],
             "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}),
        sse("[DONE]"),
    ]  # fmt: skip
    fake_openai.script = Script(events=events)
    client = await gateway(models=[openai_model(fake_openai)])
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(sdk, "up", tools=[WEATHER])
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == ARGS
    assert calls[0].id == "call_9"
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage.prompt_token_count == 5
    assert usage.candidates_token_count == 7
    sent = fake_openai.records[0].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"]["type"] == "object"


async def test_route_from_anthropic_and_sim(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(events=anthropic_wire(tool_events("get_weather", '{"a": 1}', 2)))
    client = await gateway(models=[anthropic_model(fake_anthropic), SIM_FAST])
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(sdk, "claude", tools=[WEATHER])
        sim = await _stream(sdk, "sim")
    assert "".join(c.text or "" for c in chunks) == "Let me check."
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert len(calls) == 1 and calls[0].args == {"a": 1}
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == 20
    assert "".join(c.text or "" for c in sim)
    assert sim[-1].candidates[0].finish_reason == types.FinishReason.STOP


async def test_heartbeats_do_not_break_the_sdk(gateway: GatewayFactory, log_lines: Any) -> None:
    """``google-genai`` parses every non-empty line as JSON, so a Gemini
    client's heartbeat is an empty line, not ``: ping`` (which failed it)."""
    slow = {**SIM_FAST, "ttft_ms": 400, "stream": {"heartbeat_interval_s": 0.05}}
    client = await gateway(models=[slow])
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(sdk, "sim")
    assert "".join(c.text or "" for c in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    line = next(li for li in log_lines() if li["event"] == "request")
    assert line["heartbeats"] >= 1


async def test_route_non_streaming_and_history(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.whole = response([text("Sure."), call("get_weather", ARGS)], "STOP", USAGE)
    client = await gateway(models=[gemini_model(fake_gemini)])
    history = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args=ARGS))],
        ),
        types.Content(
            role="user",
            parts=[types.Part(function_response=types.FunctionResponse(
                name="get_weather", response={"temp": 3}))],
        ),
    ]  # fmt: skip
    async with genai_client(root_of(client)) as sdk:
        result = await sdk.aio.models.generate_content(
            model="gem", contents=history, config=types.GenerateContentConfig(tools=[WEATHER])
        )
    assert result.text == "Sure."
    assert result.function_calls and result.function_calls[0].args == ARGS
    assert result.usage_metadata is not None and result.usage_metadata.total_token_count == 13
    contents = fake_gemini.records[0].body["contents"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"temp": 3}


async def test_route_errors_in_googles_shape(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with genai_client(root_of(client)) as sdk:
        with pytest.raises(genai_errors.ClientError) as info:
            await sdk.aio.models.generate_content(model="nope", contents="hi")
        assert info.value.code == 404 and info.value.status == "NOT_FOUND"
        fake_gemini.script = Script(status=429, error_body=gemini_error(429, "RESOURCE_EXHAUSTED"))
        with pytest.raises(genai_errors.ClientError) as info:
            await _stream(sdk, "gem")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    # A failure after the first event: Google's error object as the last event.
    events = [response([text("partial")]), gemini_error(500, "INTERNAL", "boom")]
    fake_gemini.script = Script(events=wire(events))
    resp = await client.post(
        "/v1beta/models/gem:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )
    lines = [line for line in (await resp.text()).splitlines() if line]
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(sdk, "gem")
    # This SDK release does not raise on the error object: it yields a
    # response without candidates (docs/gemini.md), never a finish reason.
    assert chunks[0].text == "partial" and not chunks[-1].candidates
    assert resp.status == 200 and len(lines) == 2
    assert '"partial"' in lines[0] and "boom" in lines[1]
    assert (
        lines[1].startswith('data: {"error":{"code":502,') and '"status":"UNAVAILABLE"' in lines[1]
    )


async def test_route_takes_client_keys_from_goog_header_or_query(
    gateway: GatewayFactory,
) -> None:
    secret, key = make_key("team")
    client = await gateway(auth={"keys": [key]})
    async with genai_client(root_of(client), api_key=secret) as sdk:
        chunks = await _stream(sdk, "sim")
    assert "".join(c.text or "" for c in chunks)
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    ok = await client.post(f"/v1beta/models/sim:generateContent?key={secret}", json=body)
    assert ok.status == 200
    async with genai_client(root_of(client), api_key="wrong") as sdk:
        with pytest.raises(genai_errors.ClientError) as info:
            await _stream(sdk, "sim")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"


async def test_thought_signature_round_trip_through_the_route(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    """google-genai -> Sluice (Chat Completions inside) -> Gemini: the
    signature of a call reaches the client and, sent back, the upstream."""
    part = {**call("get_weather", ARGS), "thoughtSignature": "c2lnbmF0dXJl+/8="}
    fake_gemini.script = Script(events=wire([response([part], "STOP", USAGE)]))
    client = await gateway(models=[gemini_model(fake_gemini)])
    async with genai_client(root_of(client)) as sdk:
        chunks = await _stream(sdk, "gem", tools=[WEATHER])
        parts = [p for c in chunks for p in c.candidates[0].content.parts or () if p.function_call]
        assert parts[0].thought_signature == b"signature\xfb\xff"
        history = [
            types.Content(role="user", parts=[types.Part(text="hi")]),
            types.Content(role="model", parts=parts),
            types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                name="get_weather", response={"temp": 3}))]),
        ]  # fmt: skip
        await sdk.aio.models.generate_content(model="gem", contents=history)
    sent = fake_gemini.records[1].body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "c2lnbmF0dXJl+/8="
    assert sent["functionCall"]["name"] == "get_weather"


async def test_models_list_and_get(gateway: GatewayFactory) -> None:
    secret, key = make_key("team", models=["sim"])
    client = await gateway(models=[SIM_FAST, {**SIM_FAST, "name": "other"}], auth={"keys": [key]})
    async with genai_client(root_of(client), api_key=secret) as sdk:
        listed = [m async for m in await sdk.aio.models.list()]
        got = await sdk.aio.models.get(model="sim")
        with pytest.raises(genai_errors.ClientError) as info:
            await sdk.aio.models.get(model="other")  # not this key's
    assert [m.name for m in listed] == ["models/sim"]
    assert got.name == "models/sim" and got.supported_actions == [
        "generateContent",
        "streamGenerateContent",
    ]
    assert info.value.code == 404
