"""The JavaScript client ``GET /sluice.js``, run by Node (its fetch, streams and
TextDecoder are the browser's APIs) against the gateway on a real socket:
the SSE parser, streaming, errors, Stop, and resuming through a TCP proxy that
cuts the connection mid-stream."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.providers.sim import sim_token
from tests.cutting_proxy import CuttingProxy
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

NODE = shutil.which("node")
SCRIPT = Path(__file__).parent / "js" / "sluice_check.mjs"
SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 2, "output_tokens": 40}
TEXT = "".join(sim_token(i) for i in range(40))
BODY = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


async def _module(client: TestClient[Any, Any], tmp_path: Path) -> Path:
    resp = await client.get("/sluice.js")
    assert resp.status == 200
    assert resp.content_type == "text/javascript"
    path = tmp_path / "sluice.mjs"
    path.write_bytes(await resp.read())
    return path


async def _node(module: Path, scenario: str, base: str, **args: Any) -> dict[str, Any]:
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, str(SCRIPT), str(module), scenario, base, json.dumps(args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_parser_follows_the_whatwg_rules_at_every_split(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    module = await _module(await gateway(models=[SIM]), tmp_path)
    wire = (
        "\ufeff: comment\r\nevent: a\r\ndata: one\r\ndata: two\r\nid: 7\r\n\r\n"
        "data: é🎉\n\ndata:no-space\r\rdata: cut"
    )
    result = await _node(module, "parse", "-", wire=wire)
    assert len(result["distinct"]) == 1  # the same events whatever the split
    assert result["events"] == [
        {"event": "a", "data": "one\ntwo", "id": "7"},
        {"event": None, "data": "é🎉", "id": "7"},
        {"event": None, "data": "no-space", "id": "7"},
    ]


async def test_streams_the_simulator(gateway: GatewayFactory, tmp_path: Path) -> None:
    client = await gateway(models=[SIM])
    module = await _module(client, tmp_path)
    result = await _node(module, "stream", str(client.make_url("/v1")), body=BODY)
    assert result == {"text": TEXT}


async def test_errors_are_typed(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script = Script(events=[sse(chunk("a"))], then="close")
    client = await gateway(models=[SIM, openai_model(fake_openai)])
    module = await _module(client, tmp_path)
    base = str(client.make_url("/v1"))
    missing = await _node(module, "stream", base, body={**BODY, "model": "nope"})
    assert missing["error"]["isSluice"] and missing["error"]["status"] == 404
    midway = await _node(module, "stream", base, body={**BODY, "model": "up"})
    assert midway["error"]["isSluice"] and midway["error"]["status"] == 200


async def test_stop_closes_the_upstream(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script = Script(events=[sse(chunk(f"t{i} ")) for i in range(500)], itl_s=0.01)
    client = await gateway(models=[openai_model(fake_openai)])
    module = await _module(client, tmp_path)
    result = await _node(
        module, "stream", str(client.make_url("/v1")), body={**BODY, "model": "up"}, stopAfter=3
    )
    assert result["error"]["name"] == "AbortError"
    async with asyncio.timeout(5):
        while fake_openai.records[0].closed_at is None:
            await asyncio.sleep(0.01)


async def test_a_cut_connection_resumes_to_the_same_text(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    client = await gateway(models=[SIM])
    module = await _module(client, tmp_path)
    proxy = CuttingProxy(client.server.port or 0, cut_after=2500)
    port = await proxy.start()
    try:
        result = await _node(
            module, "stream", f"http://127.0.0.1:{port}/v1", body=BODY, resumable=True
        )
    finally:
        await proxy.close()
    assert result == {"text": TEXT}
    assert proxy.connections >= 2  # it did reconnect
