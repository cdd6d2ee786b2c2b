"""Operator view of one request: one summary log line each; client messages
carry the request id and no internals, which go to that log line."""

from __future__ import annotations

import re
import socket
from typing import Any

import openai
import pytest

from tests.conftest import LogLines
from tests.fakes import FakeOpenAI, Script
from tests.helpers import GatewayFactory, openai_model, sdk

URL = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def lines_for(log_lines: LogLines, request_id: str) -> list[dict[str, Any]]:
    return [line for line in log_lines() if line.get("request_id") == request_id]


def summaries(log_lines: LogLines, request_id: str) -> list[dict[str, Any]]:
    return [line for line in lines_for(log_lines, request_id) if line["event"] == "request"]


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("ok", 200),
        ("bad-request", 400),
        ("unknown-model", 404),
        ("unknown-route", 404),
        ("upstream-500", 502),
    ],
)
async def test_one_summary_line_per_request(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    log_lines: LogLines,
    case: str,
    status: int,
) -> None:
    fake_openai.script = Script(status=500)
    client = await gateway(models=[{"name": "sim", "provider": "sim", "ttft_ms": 0,
                                    "itl_ms": 0, "output_tokens": 3},
                                   openai_model(fake_openai)])  # fmt: skip
    request_id = f"req-{case}"
    body: dict[str, Any] = {
        "ok": {"model": "sim", "messages": MSGS},
        "bad-request": {"model": "sim", "messages": []},
        "unknown-model": {"model": "nope", "messages": MSGS},
        "unknown-route": {},
        "upstream-500": {"model": "up", "messages": MSGS},
    }[case]
    path = "/v1/nothing" if case == "unknown-route" else URL
    resp = await client.post(path, json=body, headers={"X-Request-Id": request_id})
    assert resp.status == status
    payload = await resp.json()

    (line,) = summaries(log_lines, request_id)
    assert line["method"] == "POST"
    assert line["status"] == status
    assert line["route"] == ("unmatched" if case == "unknown-route" else URL)
    assert isinstance(line["duration_ms"], float)
    assert line["bytes"] == len(await resp.read())
    if case in ("ok", "unknown-model", "upstream-500"):
        assert line["model"] == body["model"]
    if status == 200:
        assert "error_type" not in line
        assert payload["choices"]
    else:
        assert line["error_type"] == payload["error"]["type"]
        assert line["error_code"] == payload["error"]["code"]
        assert payload["error"]["message"].endswith(f"(request id {request_id})")


async def test_summary_line_for_a_stream(gateway: GatewayFactory, log_lines: LogLines) -> None:
    client = await gateway()
    resp = await client.post(
        URL,
        json={"model": "sim", "messages": MSGS, "stream": True},
        headers={"X-Request-Id": "req-stream"},
    )
    assert resp.status == 200
    body = await resp.read()
    (line,) = summaries(log_lines, "req-stream")
    assert (line["status"], line["model"]) == (200, "sim")
    # Every event counts, those written past aiohttp's writer too (SSEResponse.send):
    # the body as sent, its chunk framing and headers included, is larger than as read.
    assert line["bytes"] > len(body)
    # The upstream leg in two: its headers come before its first chunk.
    assert 0 <= line["upstream_headers_ms"] <= line["upstream_ttft_ms"] <= line["ttft_ms"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Timeout)\b")


async def test_unreachable_upstream_message_has_no_internals(
    gateway: GatewayFactory, log_lines: LogLines
) -> None:
    """Contract: the client gets a short sentence and the request id; the
    exception, address and port go to the log line with that request id.
    (Waits on the providers putting internals in ``GatewayError.detail``.)"""
    port = closed_port()
    model = {"name": "up", "provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}
    client = await gateway(models=[model])
    request_id = "req-unreachable"
    async with sdk(client) as oa:
        with pytest.raises(openai.APIStatusError) as info:
            await oa.chat.completions.create(
                model="up",
                messages=MSGS,
                extra_headers={"X-Request-Id": request_id},  # type: ignore[arg-type]
            )
    assert info.value.status_code == 502
    message = info.value.body["message"]  # type: ignore[index]
    assert message.endswith(f"(request id {request_id})")
    assert "127.0.0.1" not in message
    assert str(port) not in message
    assert CLASS_NAME.search(message) is None, message
    (line,) = summaries(log_lines, request_id)
    assert line["error_code"] == "upstream_connect_error"
    assert str(port) in line["detail"]


async def test_model_without_key_is_503_and_logged(
    gateway: GatewayFactory,
    fake_openai: FakeOpenAI,
    log_lines: LogLines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    keyless = {**openai_model(fake_openai), "name": "local", "api_key_env": ""}
    client = await gateway(models=[openai_model(fake_openai), keyless])
    assert any(
        line["event"] == "upstream_key_missing" and line["model"] == "up"
        and line["missing_env"] == "OPENAI_API_KEY" for line in log_lines()
    )  # fmt: skip
    assert not any(line.get("model") == "local" for line in log_lines())

    async with sdk(client) as oa:
        with pytest.raises(openai.APIStatusError) as info:
            await oa.chat.completions.create(
                model="up",
                messages=MSGS,
                extra_headers={"X-Request-Id": "req-nokey"},  # type: ignore[arg-type]
            )
        assert info.value.status_code == 503
        assert info.value.body["code"] == "upstream_not_configured"  # type: ignore[index]
        assert "OPENAI_API_KEY" not in info.value.message
        (line,) = summaries(log_lines, "req-nokey")
        assert "OPENAI_API_KEY" in line["detail"]
        assert fake_openai.records == []

        # the keyless local server is served
        done = await oa.chat.completions.create(model="local", messages=MSGS)  # type: ignore[arg-type]
        assert done.choices[0].message.content == "hi"

    resp = await client.get("/readyz")
    assert resp.status == 200
    ready = await resp.json()
    assert ready["status"] == "ready"
    assert ready["unconfigured_models"] == [{"model": "up", "missing_env": "OPENAI_API_KEY"}]


async def test_readyz_503_when_no_model_is_configured(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unconfigured"


def test_credentials_are_scrubbed_from_every_line(log_lines: LogLines) -> None:
    """Issue 20 row 6, the backstop: whatever a line carries (ours through
    structlog, a library's through the stdlib), a credential-shaped value is
    redacted: Bearer, x-api-key, api_key=, sk-... secrets, raw or escaped."""
    import io
    import logging

    import structlog

    stdlib_out = io.StringIO()
    from gateway.log import ParserErrorFilter

    (handler,) = [  # ours, not pytest's capture
        h for h in logging.getLogger().handlers
        if any(isinstance(f, ParserErrorFilter) for f in h.filters)
    ]  # fmt: skip
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stdlib_out)

    secret = "sk-sluice-Zm9vYmFyYmF6cXV4cXV1eA"
    opaque = "Zm9vYmFy0123456789"  # not sk- shaped: caught by what precedes it
    structlog.get_logger("t").warning(
        "odd", header=f"Authorization: Bearer {opaque}\x01", raw=f"b'x-api-key: {secret}\\x7f'"
    )
    logging.getLogger("aiohttp.web").error("dump: %s", f"GET /?api_key={opaque} Bearer {secret}")
    ours = log_lines()[-1]
    assert ours["header"] == "Authorization: Bearer [redacted]\x01"
    assert ours["raw"] == "b'x-api-key: [redacted]\\x7f'"
    theirs = stdlib_out.getvalue()
    assert "dump: GET /?api_key=[redacted] Bearer [redacted]" in theirs
    for text in (str(log_lines()), theirs):
        assert secret not in text and opaque not in text
    # A client message naming the header format is left alone.
    structlog.get_logger("t").info("hint", msg="send it as 'Authorization: Bearer <key>'")
    assert log_lines()[-1]["msg"].endswith("Bearer <key>'")


async def test_an_upstream_error_names_the_url_called_in_the_log(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, log_lines: LogLines
) -> None:
    """An upstream 404 (a wrong base_url, say) says in the log which URL it came
    from; the client is told only the short message."""
    fake_openai.script = Script(status=404)
    client = await gateway(models=[openai_model(fake_openai)])
    resp = await client.post(
        URL, json={"model": "up", "messages": MSGS}, headers={"X-Request-Id": "req-404"}
    )
    assert resp.status == 404  # an upstream 4xx is relayed with its status
    assert fake_openai.base_url not in await resp.text()
    (line,) = summaries(log_lines, "req-404")
    assert f"from POST {fake_openai.base_url}/chat/completions" in line["detail"], line
