"""Hostile and malformed input: clear 4xx errors or bounded disconnects, never a 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import GatewayFactory

URL = "/v1/chat/completions"
FAST = {"name": "sim", "provider": "sim", "ttft_ms": 0, "itl_ms": 0, "output_tokens": 2}


async def test_huge_number_of_messages(gateway: GatewayFactory) -> None:
    client = await gateway(server={"max_body_bytes": 4 << 20})
    body = {"model": "sim", "messages": [{"role": "user", "content": "x"}] * 20_000}
    resp = await client.post(URL, json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "messages"


async def test_content_parts_and_unknown_fields_are_accepted(gateway: GatewayFactory) -> None:
    client = await gateway(models=[FAST])
    body = {
        "model": "sim", "stream": True, "unknown_field": {"a": 1},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }  # fmt: skip
    resp = await client.post(URL, json=body)
    assert resp.status == 200
    assert (await resp.text()).endswith("data: [DONE]\n\n")


async def test_slow_headers_are_cut_by_the_keepalive_timeout(gateway: GatewayFactory) -> None:
    client = await gateway(server={"keepalive_timeout_s": 0.5})
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)

    async def trickle() -> None:
        # A header line every 0.2 s, never the blank line that ends them.
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                await asyncio.sleep(0.2)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(5):
            try:
                data = await reader.read(1024)
            except ConnectionError:
                data = b""
        assert data == b""  # closed by the gateway, no response
    finally:
        task.cancel()
        await asyncio.wait([task])
        writer.close()


@pytest.mark.parametrize("path", [URL, "/v1/messages"])
async def test_slow_body_gets_408(gateway: GatewayFactory, path: str) -> None:
    """Both routes read bodies through one path, under ``body_timeout_s``."""
    client = await gateway(server={"body_timeout_s": 0.3})
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = orjson.loads(await reader.readexactly(int(headers["content-length"])))
    finally:
        writer.close()
    assert b" 408 " in status_line
    if path == URL:
        assert body["error"]["code"] == "request_timeout"
    else:
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "0.3 s" in body["error"]["message"]


async def test_many_connections_that_never_read_do_not_block_others(
    gateway: GatewayFactory,
) -> None:
    flood = {"name": "sim", "provider": "sim", "ttft_ms": 0, "itl_ms": 0, "output_tokens": 50_000}
    client = await gateway(
        models=[flood, {**FAST, "name": "fast"}],
        stream={"send_timeout_s": 1.0, "downstream_buffer_bytes": 8192},
    )
    payload = orjson.dumps(
        {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    writers = []
    for _ in range(20):
        _, w = await asyncio.open_connection(client.server.host, client.server.port)
        w.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        writers.append(w)
    try:
        await asyncio.sleep(0.2)
        resp = await client.post(
            URL,
            json={"model": "fast", "stream": True, "messages": [{"role": "user", "content": "y"}]},
        )
        assert resp.status == 200
        assert (await resp.text()).endswith("data: [DONE]\n\n")
    finally:
        for w in writers:
            w.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20,
)  # fmt: skip
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "bogus"]) | json_values},
        optional={"content": st.text(max_size=30) | json_values},
    ),
    max_size=4,
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["sim", "nope", ""]) | json_values,
            "messages": messages | json_values,
            "stream": st.booleans() | json_values,
            "max_tokens": st.integers(min_value=-5, max_value=10**12) | json_values,
            "temperature": st.floats(allow_nan=False, allow_infinity=False) | json_values,
            "stream_options": st.fixed_dictionaries({"include_usage": st.booleans() | json_values}),
            "n": st.integers(-2, 200),
        },
    )
    | json_values
)


async def test_fuzzed_bodies_get_2xx_or_4xx(gateway: GatewayFactory) -> None:
    client = await gateway(models=[FAST])

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(body=bodies)
    def check(body: Any) -> None:
        statuses.append(body)

    statuses: list[Any] = []
    check()  # collect examples synchronously, then send them on the event loop
    for body in statuses:
        resp = await client.post(
            URL, data=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        text = await resp.text()
        assert 200 <= resp.status < 500, (resp.status, body, text)
        if resp.status >= 400:
            error = orjson.loads(text)["error"]
            assert error["message"]
        elif isinstance(body, dict) and body.get("stream") is True:
            assert text.endswith("data: [DONE]\n\n")
        else:
            assert orjson.loads(text)["object"] == "chat.completion"
