"""The official openai SDK as a client of the gateway, on real sockets."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from aioresponses import aioresponses

from gateway.providers.sim import sim_token
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, sdk

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
SIM_TEXT = "".join(sim_token(i) for i in range(8))


async def test_stream_from_simulator(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="sim", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SIM_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_stream_usage_when_asked(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="sim",
            messages=MESSAGES,
            stream=True,
            max_tokens=3,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert chunks[-2].choices[0].finish_reason == "length"


async def test_non_streaming_from_simulator(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with sdk(client) as oa:
        completion = await oa.chat.completions.create(model="sim", messages=MESSAGES)
    assert completion.choices[0].message.content == SIM_TEXT
    assert completion.usage is not None and completion.usage.completion_tokens == 8


async def test_models_lists_configured_names(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with sdk(client) as oa:
        models = [m.id async for m in oa.models.list()]
    assert models == ["sim"]


async def test_stream_from_fake_openai(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(
        events=[sse(chunk("", role="assistant")), sse(chunk("Hel")), sse(chunk("lo")),
                sse(chunk(finish="stop")), sse("[DONE]")]
    )  # fmt: skip
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(
            model="up", messages=MESSAGES, stream=True, temperature=0.5, seed=7
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello"
    sent = fake_openai.records[0].body
    assert sent["model"] == "up-model"
    assert sent["temperature"] == 0.5 and sent["seed"] == 7 and sent["stream"] is True


async def test_non_streaming_from_fake_openai(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        completion = await oa.chat.completions.create(model="up", messages=MESSAGES)
    assert completion.choices[0].message.content == "hi"
    assert fake_openai.records[0].body["stream"] is False


@pytest.mark.usefixtures("aioresponses_shim")
async def test_stream_with_aioresponses_upstream(gateway: GatewayFactory) -> None:
    upstream = "http://upstream.invalid/v1"
    body = (
        sse(chunk("", role="assistant"))
        + sse(chunk("mocked"))
        + sse(chunk(finish="stop"))
        + b"data: [DONE]\n\n"
    )
    client = await gateway(models=[{"name": "m", "provider": "openai", "base_url": upstream}])
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(
            f"{upstream}/chat/completions",
            body=body,
            headers={"Content-Type": "text/event-stream"},
        )
        async with sdk(client) as oa:
            stream = await oa.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "mocked"
        ((_, calls),) = mocked.requests.items()
        sent = json.loads(calls[0].kwargs["data"])
    assert sent["model"] == "m" and sent["stream_options"] == {"include_usage": True}


@pytest.mark.usefixtures("aioresponses_shim")
async def test_non_streaming_with_aioresponses_upstream(gateway: GatewayFactory) -> None:
    upstream = "http://upstream.invalid/v1"
    client = await gateway(models=[{"name": "m", "provider": "openai", "base_url": upstream}])
    payload = {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "from mock"}}],
        "system_fingerprint": "fp_custom",
    }  # fmt: skip
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(f"{upstream}/chat/completions", payload=payload)
        async with sdk(client) as oa:
            completion = await oa.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "from mock"
    assert completion.system_fingerprint == "fp_custom"


async def test_upstream_failure_mid_stream_raises_in_sdk(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[sse(chunk("partial"))], then="close")
    client = await gateway(models=[openai_model(fake_openai)])
    received: list[str] = []
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="up", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as excinfo:
            async for c in stream:
                received.append(c.choices[0].delta.content or "")
    assert received == ["partial"]
    assert "upstream" in str(excinfo.value.message)


async def test_upstream_error_event_mid_stream_raises_in_sdk(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(
        events=[sse(chunk("a")), sse({"error": {"message": "model crashed", "type": "server"}})]
    )
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="up", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="model crashed"):
            async for _ in stream:
                pass
