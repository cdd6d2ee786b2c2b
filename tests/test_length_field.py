"""A request's length cap reaches an OpenAI-dialect upstream under the name it
honours (``max_tokens_field``): OpenAI's reasoning models reject
``max_tokens``; llama.cpp's server ignores ``max_completion_tokens`` (before,
a Responses ``max_output_tokens`` of 8 became ``max_completion_tokens`` and
the real model generated 26 tokens)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from gateway.config import OpenAIModel
from gateway.dialects.translate_request import with_length_field
from tests.fakes import FakeOpenAI
from tests.helpers import GatewayFactory, openai_model, sdk
from tests.real_model import RealModel

CAP = 8
LONG = "Count from 1 to 300, one number per line."


@pytest.mark.parametrize(
    ("body", "field", "sent"),
    [
        ({"max_completion_tokens": 8}, "max_tokens", {"max_tokens": 8}),
        ({"max_tokens": 8}, "max_completion_tokens", {"max_completion_tokens": 8}),
        ({"max_tokens": 8}, "max_tokens", {"max_tokens": 8}),
        ({"max_tokens": 9, "max_completion_tokens": 8}, "max_tokens", {"max_tokens": 8}),
        ({"max_tokens": 9, "max_completion_tokens": None}, "max_tokens", {"max_tokens": 9}),
        ({"model": "m"}, "max_tokens", {"model": "m"}),
    ],
)
def test_the_cap_is_renamed(body: dict[str, Any], field: Any, sent: dict[str, Any]) -> None:
    assert with_length_field(body, field) == sent


@pytest.mark.parametrize(
    ("base_url", "setting", "field"),
    [
        (None, "auto", "max_completion_tokens"),
        ("https://api.openai.com/v1", "auto", "max_completion_tokens"),
        ("https://team.openai.azure.com/openai/v1", "auto", "max_completion_tokens"),
        ("http://127.0.0.1:8000/v1", "auto", "max_tokens"),
        ("http://127.0.0.1:8000/v1", "max_completion_tokens", "max_completion_tokens"),
        (None, "max_tokens", "max_tokens"),
    ],
)
def test_auto_is_decided_by_the_host(base_url: str | None, setting: str, field: str) -> None:
    model = OpenAIModel.model_validate(
        {"name": "m", "provider": "openai", "base_url": base_url, "max_tokens_field": setting}
    )
    assert model.length_field == field


async def test_a_responses_cap_reaches_a_compatible_server_as_max_tokens(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    async with sdk(client) as oa:
        await oa.responses.create(model="up", input="hi", max_output_tokens=CAP, store=False)
        await oa.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=CAP
        )
    sent = [record.body for record in fake_openai.records]
    assert [(b.get("max_tokens"), "max_completion_tokens" in b) for b in sent] == [
        (CAP, False),
        (CAP, False),
    ]


async def test_openai_itself_gets_max_completion_tokens(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    """``max_tokens_field = "max_completion_tokens"`` (what ``auto`` picks for
    api.openai.com): a Messages client's ``max_tokens`` is renamed."""
    model = openai_model(fake_openai, max_tokens_field="max_completion_tokens")
    client = await gateway(models=[model])
    ac = anthropic.AsyncAnthropic(base_url=str(client.make_url("")), api_key="k", max_retries=0)
    async with ac:
        await ac.messages.create(
            model="up", max_tokens=CAP, messages=[{"role": "user", "content": "hi"}]
        )
    (body,) = [record.body for record in fake_openai.records]
    assert body.get("max_completion_tokens") == CAP and "max_tokens" not in body


@pytest.mark.parametrize("api", ["responses", "responses-streamed", "chat"])
async def test_the_cap_holds_on_the_real_model(
    gateway: GatewayFactory, real_model: RealModel, api: str
) -> None:
    """The real model is asked for a long answer with a cap of 8: it stops at 8
    tokens (the server's own count: its usage, or its tokenizer on the text)."""
    client = await gateway(models=[real_model.gateway_model()])
    async with sdk(client) as oa:
        if api == "chat":
            done = await oa.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": LONG}],
                max_completion_tokens=CAP,
                temperature=0,
            )
            assert done.choices[0].finish_reason == "length"
            assert done.usage is not None and done.usage.completion_tokens == CAP
            return
        kwargs: dict[str, Any] = {
            "model": "smollm2", "input": LONG, "max_output_tokens": CAP,
            "temperature": 0, "store": False,
        }  # fmt: skip
        if api == "responses":
            response = await oa.responses.create(**kwargs)
            assert response.usage is not None and response.usage.output_tokens == CAP
        else:
            # It ends with ``response.incomplete`` (the SDK's stream helper
            # wants ``response.completed``): read the events.
            text, last = "", None
            async for event in await oa.responses.create(**kwargs, stream=True):
                if event.type == "response.output_text.delta":
                    text += event.delta
                last = event
            assert last is not None and last.type == "response.incomplete"
            response = last.response
            assert 0 < real_model.count_tokens(text) <= CAP
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
