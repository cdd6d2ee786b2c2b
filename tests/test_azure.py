"""``provider = "azure"`` through Sluice, on real sockets: the three client
dialects (Chat Completions, Responses, Messages), streamed and not, with
tools, read by the official openai and anthropic SDKs, against the fake
Azure resource (tests/fake_azure.py, itself checked by the official
``AsyncAzureOpenAI`` client in tests/test_azure_fake.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.metrics import Metrics
from gateway.ops import unconfigured_models
from tests.conftest import LogLines
from tests.fake_anthropic import anthropic_sdk
from tests.fake_azure import (
    API_VERSION,
    DEPLOYMENT,
    KEY,
    FakeAzure,
    azure_model,
    completion,
    responses_stream,
    text_stream,
    tool_stream,
)
from tests.fakes import Script
from tests.helpers import GatewayFactory, sdk, settings_from, upstream_plateau
from tests.rawclient import RawSSEClient
from tests.test_backpressure import PAD

MESSAGES: Any = [{"role": "user", "content": "hi"}]
ARGS = {"city": "Zürich", "days": [1, 2]}
ARGS_JSON = orjson.dumps(ARGS).decode()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
ANTHROPIC_TOOLS: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "get_weather",
                         "parameters": {"type": "object"}}]  # fmt: skip


def _the_request_azure_expects(fake: FakeAzure) -> None:
    """What Sluice sent is what the official AsyncAzureOpenAI client sends."""
    seen = fake.seen[-1]
    assert seen.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen.query == {"api-version": API_VERSION}
    assert seen.headers["api-key"] == KEY and "Authorization" not in seen.headers


async def test_chat_stream_relays_azure_chunks(
    gateway: GatewayFactory, fake_azure: FakeAzure, metrics: Metrics, log_lines: LogLines
) -> None:
    fake_azure.script = Script(events=text_stream(["Hel", "lo"], "content_filter"))
    client = await gateway(models=[azure_model(fake_azure)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="az", messages=MESSAGES, stream=True, max_tokens=50,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [c async for c in stream]
    _the_request_azure_expects(fake_azure)
    sent = fake_azure.records[0].body
    assert sent["model"] == DEPLOYMENT and sent["max_completion_tokens"] == 50
    assert "max_tokens" not in sent and sent["stream_options"] == {"include_usage": True}
    # Relayed as Azure sent it: the prompt-filter chunk, filter results per choice.
    assert chunks[0].choices == [] and "prompt_filter_results" in (chunks[0].model_extra or {})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and
                   c.choices[0].delta)  # fmt: skip
    assert text == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    labels = {"model": "az", "provider": "azure", "reason": "completed"}
    assert metrics.registry.get_sample_value("sluice_stream_terminations_total", labels) == 1
    summary = [line for line in log_lines() if line.get("event") == "request"]
    assert [(line["provider"], line["outcome"]) for line in summary] == [("azure", "completed")]


async def test_the_estimated_usage_chunk_names_the_completion_not_the_prompt_filter(
    gateway: GatewayFactory, fake_azure: FakeAzure
) -> None:
    """An Azure stream without usage, to a client that asked for it: Sluice's
    usage chunk takes ``id`` and ``model`` from the first real chunk, not from
    the prompt-filter chunk (empty ``id`` and ``model``)."""
    fake_azure.script = Script(events=text_stream(["Hel", "lo"], usage=False))
    client = await gateway(models=[azure_model(fake_azure)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="az", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert (last.id, last.model) == (chunks[1].id, chunks[1].model) and last.id


async def test_chat_completion_with_a_tool_call(
    gateway: GatewayFactory, fake_azure: FakeAzure
) -> None:
    fake_azure.completion = completion(None, "tool_calls", ("get_weather", ARGS_JSON))
    client = await gateway(models=[azure_model(fake_azure)])
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(model="az", messages=MESSAGES, tools=TOOLS)
    _the_request_azure_expects(fake_azure)
    call = (done.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.arguments == ARGS_JSON
    assert done.choices[0].finish_reason == "tool_calls"
    assert fake_azure.records[0].body["tools"] == TOOLS


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_messages_client_text_filtered_and_tools(
    gateway: GatewayFactory, fake_azure: FakeAzure, stream: bool
) -> None:
    """Anthropic clients: Azure's content_filter is ``refusal``; a tool call
    is a ``tool_use`` block; the empty-choices chunks add nothing."""
    fake_azure.queue = [Script(events=text_stream(["Hel", "lo"], "content_filter")),
                        Script(events=tool_stream("get_weather", ARGS_JSON))]  # fmt: skip
    client = await gateway(models=[azure_model(fake_azure)])
    answers = []
    async with anthropic_sdk(client) as ac:
        for tools in ([], ANTHROPIC_TOOLS):
            if stream:
                async with ac.messages.stream(
                    model="az", max_tokens=64, messages=MESSAGES, tools=tools
                ) as s:
                    answers.append(await s.get_final_message())
            else:
                fake_azure.completion = (
                    completion("Hello", "content_filter") if not tools
                    else completion(None, "tool_calls", ("get_weather", ARGS_JSON))
                )  # fmt: skip
                answers.append(
                    await ac.messages.create(
                        model="az", max_tokens=64, messages=MESSAGES, tools=tools
                    )
                )
    _the_request_azure_expects(fake_azure)
    filtered, called = answers
    assert filtered.stop_reason == "refusal"
    assert [b.type for b in filtered.content] == ["text"]
    assert filtered.content[0].type == "text" and filtered.content[0].text == "Hello"
    assert filtered.usage.output_tokens == 5
    assert called.stop_reason == "tool_use"
    block = called.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGS
    assert fake_azure.records[1].body["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_responses_client_text_filtered_and_tools(
    gateway: GatewayFactory, fake_azure: FakeAzure, stream: bool
) -> None:
    """Responses clients (through Chat Completions): content_filter is
    ``status: incomplete``, ``incomplete_details.reason: content_filter``."""
    fake_azure.queue = [Script(events=text_stream(["Hel", "lo"], "content_filter")),
                        Script(events=tool_stream("get_weather", ARGS_JSON))]  # fmt: skip
    client = await gateway(models=[azure_model(fake_azure)])
    answers = []
    async with sdk(client) as oa:
        for tools in ([], RESPONSES_TOOLS):
            if stream:
                events = [e async for e in await oa.responses.create(
                    model="az", input="hi", tools=tools, stream=True)]  # fmt: skip
                last = events[-1]
                assert last.type in ("response.completed", "response.incomplete")
                answers.append(last.response)
            else:
                fake_azure.completion = (
                    completion("Hello", "content_filter") if not tools
                    else completion(None, "tool_calls", ("get_weather", ARGS_JSON))
                )  # fmt: skip
                answers.append(await oa.responses.create(model="az", input="hi", tools=tools))
    _the_request_azure_expects(fake_azure)
    filtered, called = answers
    assert filtered.status == "incomplete" and filtered.output_text == "Hello"
    assert filtered.incomplete_details is not None
    assert filtered.incomplete_details.reason == "content_filter"
    assert called.status == "completed"
    item = called.output[-1]
    assert item.type == "function_call" and item.name == "get_weather"
    assert orjson.loads(item.arguments) == ARGS


async def test_native_responses_on_the_v1_path(
    gateway: GatewayFactory, fake_azure: FakeAzure
) -> None:
    fake_azure.script = Script(events=responses_stream("héllo"))
    model = azure_model(fake_azure, responses_api="native")
    del model["api_version"]
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        stream = await oa.responses.create(model="az", input="hi", stream=True)
        events = [e async for e in stream]
    seen = fake_azure.seen[0]
    assert seen.path == "/openai/v1/responses" and seen.query == {}
    assert fake_azure.records[0].body["model"] == DEPLOYMENT
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "héllo"


async def test_entra_token_is_a_bearer_and_no_api_key(
    gateway: GatewayFactory, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZ_ENTRA_TOKEN", "entra-token-1")
    fake_azure.token = "entra-token-1"
    model = azure_model(fake_azure, entra_token_env="AZ_ENTRA_TOKEN")
    del model["api_version"]
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(model="az", messages=MESSAGES)
    seen = fake_azure.seen[0]
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer entra-token-1"
    assert "api-key" not in seen.headers
    assert done.choices[0].message.content == "hi"


async def test_a_stalled_client_pauses_the_azure_upstream(
    gateway: GatewayFactory, fake_azure: FakeAzure
) -> None:
    """As tests/test_backpressure.py for OpenAI: bytes read from Azure bounded."""
    # 3000 events of ~640 bytes (filter results included): 1.9 MB offered.
    events = text_stream([f"{i} {PAD}" for i in range(3000)], usage=False)
    fake_azure.script = Script(events=events, sndbuf=16384)
    client = await gateway(
        models=[azure_model(fake_azure, stream_usage=False)],
        stream={"downstream_buffer_bytes": 65536},
    )
    body: Any = {"model": "az", "stream": True, "messages": MESSAGES}
    raw = await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions", body
    )
    try:
        assert raw.status == 200
        first = await raw.events(limit=1)
        ahead = await upstream_plateau(fake_azure)
        print(f"\nAzure upstream got {ahead} bytes out of "
              f"{sum(map(len, events))} ahead of a stalled client")  # fmt: skip
        # The bound of the OpenAI test: measured 334 KB ahead (OpenAI: ~310 KB).
        assert ahead < 1 << 20
        assert not fake_azure.records[0].completed
        rest = await raw.events()
    finally:
        raw.close()
    assert len(first + rest) == len(events)
    assert fake_azure.records[0].completed


async def test_endpoint_from_the_environment_else_unconfigured(
    gateway: GatewayFactory, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``base_url``: ``AZURE_OPENAI_ENDPOINT``, as the SDK reads it; neither: 503."""
    model = azure_model(fake_azure)
    del model["base_url"]
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    client = await gateway(models=[model])
    resp = await client.post("/v1/chat/completions", json={"model": "az", "messages": MESSAGES})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "upstream_not_configured"
    assert unconfigured_models(settings_from(models=[model])) == [
        {"model": "az", "missing_env": "AZURE_OPENAI_ENDPOINT"}
    ]  # named at start and by /readyz
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake_azure.endpoint)
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        done = await oa.chat.completions.create(model="az", messages=MESSAGES)
    assert done.choices[0].message.content == "hi"
    _the_request_azure_expects(fake_azure)


async def test_a_filtered_prompt_is_a_400_with_azures_message(
    gateway: GatewayFactory, fake_azure: FakeAzure
) -> None:
    """Azure refuses a prompt its filter flags with HTTP 400 ``content_filter``
    before any chunk: each client gets a 400 in its dialect, Azure's message in it."""
    message = "The response was filtered due to the prompt triggering content management policy."
    error = {"error": {"message": message, "type": None, "param": "prompt",
                       "code": "content_filter", "status": 400}}  # fmt: skip
    fake_azure.script = Script(status=400, error_body=error)
    client = await gateway(models=[azure_model(fake_azure)])
    chat = await client.post(
        "/v1/chat/completions", json={"model": "az", "messages": MESSAGES, "stream": True}
    )
    messages = await client.post(
        "/v1/messages", json={"model": "az", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    )
    assert chat.status == messages.status == 400
    assert message in (await chat.json())["error"]["message"]
    body = await messages.json()
    assert body["error"]["type"] == "invalid_request_error" and message in body["error"]["message"]


async def test_azure_429_is_retried_then_falls_back(
    gateway: GatewayFactory, fake_azure: FakeAzure, metrics: Metrics
) -> None:
    """Azure's retryable statuses feed retries and fallbacks before the first
    token, as OpenAI's do (retries counted under provider="azure")."""
    busy = {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create "
                      "Operation have exceeded call rate limit."}}  # fmt: skip
    throttled = Script(status=429, error_body=busy, headers={"Retry-After": "0"})
    fake_azure.queue = [throttled, Script(events=text_stream(["ok"])), throttled, throttled]
    backup = {**azure_model(fake_azure), "name": "az-backup", "deployment": "backup"}
    model = azure_model(fake_azure, retries=1, retry_backoff_s=0.01, fallbacks=["az-backup"])
    client = await gateway(models=[model, backup])
    fake_azure.script = Script(events=text_stream(["backup"]))
    texts = []
    async with sdk(client) as oa:
        for _ in range(2):
            stream = await oa.chat.completions.create(model="az", messages=MESSAGES, stream=True)
            texts.append("".join([c.choices[0].delta.content or "" async for c in stream
                                  if c.choices and c.choices[0].delta]))  # fmt: skip
    assert texts == ["ok", "backup"]  # the retry, then the fallback's deployment
    paths = [s.path.split("/")[3] for s in fake_azure.seen]
    assert paths == [DEPLOYMENT, DEPLOYMENT, DEPLOYMENT, DEPLOYMENT, "backup"]
    counts = {
        reason: metrics.registry.get_sample_value(
            "sluice_upstream_retries_total", {"provider": "azure", "reason": reason}
        )
        for reason in ("rate_limited", "fallback")
    }
    assert counts == {"rate_limited": 2, "fallback": 1}
