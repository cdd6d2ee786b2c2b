"""Bad input -> 4xx and upstream failures -> mapped statuses, as OpenAI error objects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

URL = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def assert_openai_error(body: Any, *, param: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param


@pytest.mark.parametrize(
    ("data", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'"just a string"', 400, None),
        (b"", 400, None),
        (b"\xff\xfe{}", 400, None),
        (b'{"messages": []}', 400, "model"),
        (b'{"model": "sim"}', 400, "messages"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "sim", "messages": "hi"}', 400, "messages"),
        (b'{"model": "sim", "messages": []}', 400, "messages"),
        (b'{"model": "sim", "messages": [{"content": "x"}]}', 400, "messages.0.role"),
        (b'{"model": "sim", "messages": [{"role": "user", "content": 5}]}', 400, None),
        (b'{"model": "sim", "messages": [{"role": "user"}], "stream": "yes"}', 400, "stream"),
        (b'{"model": "sim", "messages": [{"role": "user"}], "max_tokens": -1}', 400,
         "max_tokens"),
        (b'{"model": "sim", "messages": [{"role": "user"}], "max_tokens": 1e99}', 400,
         "max_tokens"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
        (b"[" * 5000 + b"]" * 5000, 400, None),
    ],
)  # fmt: skip
async def test_bad_input(
    gateway: GatewayFactory, data: bytes, status: int, param: str | None
) -> None:
    client = await gateway()
    resp = await client.post(URL, data=data, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert_openai_error(await resp.json(), param=param)


async def test_body_over_limit_is_413(gateway: GatewayFactory) -> None:
    client = await gateway(server={"max_body_bytes": 2048})
    big = {"model": "sim", "messages": [{"role": "user", "content": "x" * 4096}]}
    resp = await client.post(URL, json=big)
    assert resp.status == 413
    assert_openai_error(await resp.json())


async def test_wrong_content_type_is_415(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.post(URL, data=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert resp.status == 415
    assert_openai_error(await resp.json())


async def test_unknown_route_and_method(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.get("/v1/nothing")
    assert resp.status == 404
    assert_openai_error(await resp.json())
    resp = await client.get(URL)
    assert resp.status == 405
    assert_openai_error(await resp.json())


async def test_request_id_is_echoed_or_generated(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id;<script>"})
    assert resp.headers["X-Request-Id"] != "bad id;<script>"
    assert len(resp.headers["X-Request-Id"]) == 32


@pytest.mark.parametrize(
    ("upstream_status", "headers", "status", "retry_after"),
    [
        (429, {"Retry-After": "7"}, 429, "7"),
        (500, {}, 502, None),
        (502, {}, 502, None),
        (503, {"Retry-After": "2"}, 503, "2"),
        (504, {}, 504, None),
        (400, {}, 400, None),
        (401, {}, 502, None),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_upstream_status_before_first_token(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    upstream_status: int,
    headers: dict[str, str],
    status: int,
    retry_after: str | None,
    stream: bool,
) -> None:
    fake_openai.script = Script(status=upstream_status, headers=headers)
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": stream})
    assert resp.status == status
    assert resp.headers.get("Retry-After") == retry_after
    assert_openai_error(await resp.json())


async def test_upstream_unreachable_is_502(gateway: GatewayFactory) -> None:
    client = await gateway(
        models=[{"name": "up", "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}]
    )
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_connect_error"


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (Script(events=[sse(chunk("a")), b"data: {broken json\n\n"]), "upstream_protocol_error"),
        (Script(events=[sse(chunk("a"))], then="end"), "upstream_protocol_error"),
        (Script(events=[sse(chunk("a"))], then="close"), "upstream_connect_error"),
    ],
    ids=["invalid-json", "no-done", "abrupt-close"],
)
async def test_upstream_failure_after_first_event_is_error_event(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, script: Script, code: str
) -> None:
    fake_openai.script = script
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    assert resp.status == 200
    text = await resp.text()
    events = [e for e in text.split("\n\n") if e]
    assert "data: [DONE]" not in text
    assert events[0].startswith('data: {"id"')
    assert f'"code":"{code}"' in events[-1]


async def test_non_sse_body_from_upstream_is_502(
    gateway: GatewayFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script = Script(events=[b"<html>oops</html>"], content_type="text/html")
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_protocol_error"
