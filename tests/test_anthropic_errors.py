"""/v1/messages errors in Anthropic's format
(``{"type": "error", "error": {"type", "message"}}``,
https://docs.anthropic.com/en/api/errors): bad input, upstream failures,
untranslatable requests; and the client auth headers it accepts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fake_anthropic import FakeAnthropic, anthropic_model, error
from tests.fakes import FakeOpenAI, Script
from tests.helpers import GatewayFactory, openai_model

URL = "/v1/messages"
MSGS = [{"role": "user", "content": "hi"}]


def assert_anthropic_error(body: Any, kind: str) -> None:
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind and body["error"]["message"]


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (b"[1]", 400, "invalid_request_error"),
        (b"", 400, "invalid_request_error"),
        (b'{"model": "sim", "messages": [{"role": "user", "content": "x"}]}', 400,
         "invalid_request_error"),  # max_tokens is required
        (b'{"model": "sim", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}',
         400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}',
         400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "messages": []}', 400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}',
         400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "messages": [{"role": "user"}]}', 400,
         "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": [{}]}]}',
         400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "temperature": 1.5, "messages": '
         b'[{"role": "user", "content": "x"}]}', 400, "invalid_request_error"),
        (b'{"model": "sim", "max_tokens": 5, "stream": "yes", "messages": '
         b'[{"role": "user", "content": "x"}]}', 400, "invalid_request_error"),
        (b'{"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}',
         404, "not_found_error"),
        (b'{"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": '
         b'[{"type": "document", "source": {}}]}]}', 400, "invalid_request_error"),
    ],
)  # fmt: skip
async def test_bad_input(gateway: GatewayFactory, data: bytes, status: int, kind: str) -> None:
    client = await gateway()
    resp = await client.post(URL, data=data, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert_anthropic_error(await resp.json(), kind)


async def test_body_over_limit_and_wrong_method(gateway: GatewayFactory) -> None:
    client = await gateway(server={"max_body_bytes": 2048})
    big = {"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 4096}]}
    resp = await client.post(URL, json=big)
    assert resp.status == 413
    assert_anthropic_error(await resp.json(), "request_too_large")
    resp = await client.get(URL)
    assert resp.status == 405
    assert (await resp.json())["type"] == "error"


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "kind"),
    [
        (529, error("overloaded_error", "Overloaded"), 503, "overloaded_error"),
        (429, error("rate_limit_error", "slow down"), 429, "rate_limit_error"),
        (400, error("invalid_request_error", "bad"), 400, "invalid_request_error"),
        (500, error("api_error", "boom"), 502, "api_error"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("stream", [True, False])
async def test_upstream_http_errors(
    gateway: GatewayFactory,
    fake_anthropic: FakeAnthropic,
    status: int,
    body: dict[str, Any],
    expected_status: int,
    kind: str,
    stream: bool,
) -> None:
    fake_anthropic.script = Script(status=status, error_body=body, headers={"retry-after": "3"})
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post(
        URL, json={"model": "claude", "max_tokens": 5, "messages": MSGS, "stream": stream}
    )
    assert resp.status == expected_status
    assert_anthropic_error(await resp.json(), kind)
    if status == 429:
        assert resp.headers["Retry-After"] == "3"


async def test_openai_client_gets_openai_errors_from_anthropic_upstream(
    gateway: GatewayFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script = Script(status=529, error_body=error("overloaded_error", "busy"))
    client = await gateway(models=[anthropic_model(fake_anthropic)])
    resp = await client.post(
        "/v1/chat/completions", json={"model": "claude", "messages": MSGS, "stream": True}
    )
    assert resp.status == 503
    assert (await resp.json())["error"]["type"] == "overloaded_error"
    resp = await client.post(
        "/v1/chat/completions", json={"model": "claude", "messages": MSGS, "n": 3}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "n"


async def test_untranslatable_request_is_400_before_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={
        "model": "up", "max_tokens": 5, "messages": MSGS,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]})  # fmt: skip
    assert resp.status == 400
    assert_anthropic_error(await resp.json(), "invalid_request_error")
    assert fake_openai.records == []


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": "sk-ant-client"}, {"Authorization": "Bearer sk-client"}, {}],
    ids=["x-api-key", "bearer", "none"],
)
async def test_client_auth_headers_are_accepted(
    gateway: GatewayFactory, headers: dict[str, str]
) -> None:
    client = await gateway()
    resp = await client.post(
        URL,
        json={"model": "sim", "max_tokens": 2, "messages": MSGS},
        headers={"anthropic-version": "2023-06-01", **headers},
    )
    assert resp.status == 200
    assert (await resp.json())["type"] == "message"
