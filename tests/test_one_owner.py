"""Every SSE response has one owner (the stream core): stored streams read back
(resumes, ``GET /v1/responses/{id}?stream=true``, the first reader of a
resumable stream) keep the promises a live stream keeps. Each test is a row of
issue 19 that failed before the reader went through :class:`gateway.stream.Stream`."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.metrics import Metrics
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model
from tests.keyhelp import make_key

SIM = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 2, "output_tokens": 30}
SLOW_FIRST = {"name": "late", "provider": "sim", "ttft_ms": 1500, "itl_ms": 1, "output_tokens": 3}
CHAT = {"model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
RESUMABLE = {"Sluice-Resumable": "true"}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _poll(check: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_stored_non_streaming_response_whose_client_leaves_settles(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    """Row B: it was ``in_progress`` forever; now ``cancelled`` at once, and a
    reader of it ends."""
    slow = {"name": "slow", "provider": "sim", "ttft_ms": 3000, "itl_ms": 1, "output_tokens": 3}
    client = await gateway(models=[slow], **store)
    body = {"model": "slow", "input": "hi"}
    task = asyncio.ensure_future(client.post("/v1/responses", json=body))
    ids: list[str] = []

    async def stored() -> bool:
        # The id is not answered yet: it is the one entry in the store.
        ids[:] = await _stored_ids(client)
        return len(ids) == 1

    await _poll(stored)  # the request waits on the simulator's first token
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rid = ids[0]

    async def settled() -> bool:
        got = await (await client.get(f"/v1/responses/{rid}")).json()
        return bool(got.get("status") == "cancelled")

    await _poll(settled)
    async with asyncio.timeout(5):  # a reader ends instead of hanging
        resp = await client.get(f"/v1/responses/{rid}?stream=true")
        await resp.read()


async def _stored_ids(client: TestClient[Any, Any]) -> list[str]:
    from gateway.state import STREAM_STORE

    stream_store: Any = client.server.app[STREAM_STORE]
    if hasattr(stream_store, "_entries"):
        return list(stream_store._entries)
    keys = await stream_store._redis.keys("sluice:s:resp_*:m")
    return [k.decode()[len("sluice:s:") : -2] for k in keys]


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("?stream=true&starting_after=-3", "starting_after"),
        ("?stream=true&starting_after=-1000", "starting_after"),
        (f"?stream=true&starting_after={10**30}", "starting_after"),
        ("?stream=true&starting_after=x", "starting_after"),
    ],
)
async def test_starting_after_out_of_range_is_a_400_naming_it(
    gateway: GatewayFactory, store: dict[str, Any], path: str, param: str
) -> None:
    """Row C: -3 replayed ``[9, 10, 0, 1, ...]``, -1000 was a 500 after the 200,
    10**30 a store failure."""
    client = await gateway(models=[SIM], **store)
    rid = (await (await client.post("/v1/responses", json={"model": "sim", "input": "hi"})).json())[
        "id"
    ]
    resp = await client.get(f"/v1/responses/{rid}{path}")
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == param


@pytest.mark.parametrize("value", ["-1", str(10**30), "1e3", ""])
async def test_last_event_id_out_of_range_is_a_400_naming_it(
    gateway: GatewayFactory, store: dict[str, Any], value: str
) -> None:
    client = await gateway(models=[SIM], **store)
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.read()
    if value:
        got = await client.get(f"/v1/streams/{sid}", headers={"Last-Event-ID": value})
        name = "Last-Event-ID"
    else:
        got = await client.get(f"/v1/streams/{sid}?last_event_id=")
        name = "last_event_id"
    assert got.status == 400, await got.text()
    assert (await got.json())["error"]["param"] == name


async def test_a_slow_client_reading_a_resume_is_dropped_as_slow_client(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, metrics: Metrics, store: dict[str, Any]
) -> None:
    """Row D: an unhandled 500 in the log and a socket never aborted; now the
    same ``slow_client`` ending as a live stream."""
    big = "x" * 4000
    fake_openai.script = Script(events=[sse(chunk(big)) for _ in range(400)] + [sse("[DONE]")])
    client = await gateway(
        models=[openai_model(fake_openai)],
        stream={"send_timeout_s": 0.5, "downstream_buffer_bytes": 8192},
        **store,
    )
    first = await client.post(
        "/v1/chat/completions", json={**CHAT, "model": "up"}, headers=RESUMABLE
    )
    sid = first.headers["Sluice-Stream-Id"]
    await first.read()  # the whole stream is stored
    port = client.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(f"GET /v1/streams/{sid} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # headers, then read nothing more

    async def dropped() -> bool:
        return sample(
            metrics, "sluice_stream_terminations_total",
            model="stored", provider="store", reason="slow_client",
        ) == 1  # fmt: skip

    await _poll(dropped)
    writer.close()


async def test_a_resumable_stream_sends_heartbeats_while_the_first_token_is_late(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    """Row L: a plain stream sent pings while waiting; a resumable one sent none."""
    client = await gateway(models=[SLOW_FIRST], stream={"heartbeat_interval_s": 0.2}, **store)
    resp = await client.post(
        "/v1/chat/completions", json={**CHAT, "model": "late"}, headers=RESUMABLE
    )
    body = await resp.read()
    assert body.count(b": ping\n\n") >= 3, body[:200]
    assert body.rstrip().endswith(b"data: [DONE]")


async def test_ids_are_found_only_through_their_own_api(
    gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    """Row K: ``GET /v1/responses/<stream id>`` answered 200 ``{}``; the streams
    API replayed and deleted responses."""
    client = await gateway(models=[SIM], **store)
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=RESUMABLE)
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.read()
    rid = (await (await client.post("/v1/responses", json={"model": "sim", "input": "hi"})).json())[
        "id"
    ]
    for method, path in (
        ("GET", f"/v1/responses/{sid}"),
        ("GET", f"/v1/responses/{sid}?stream=true"),
        ("POST", f"/v1/responses/{sid}/cancel"),
        ("DELETE", f"/v1/responses/{sid}"),
        ("GET", f"/v1/streams/{rid}"),
        ("DELETE", f"/v1/streams/{rid}"),
    ):
        got = await client.request(method, path)
        assert got.status == 404, (method, path, got.status)
    assert (await client.get(f"/v1/responses/{rid}")).status == 200
    assert (await client.get(f"/v1/streams/{sid}")).status == 200


async def test_readers_are_admitted_against_max_streams(
    gateway: GatewayFactory, metrics: Metrics
) -> None:
    """Row M: with ``max_streams = 3``, 10 of 10 followers were served."""
    hang = {"name": "hang", "provider": "sim", "ttft_ms": 5, "itl_ms": 200, "output_tokens": 100}
    client = await gateway(models=[hang], server={"max_streams": 3})
    body = {"model": "hang", "input": "hi", "background": True}
    rid = (await (await client.post("/v1/responses", json=body)).json())["id"]  # 1 slot
    readers = [await client.get(f"/v1/responses/{rid}?stream=true") for _ in range(2)]
    assert all(r.status == 200 for r in readers)
    refused = await client.get(f"/v1/responses/{rid}?stream=true")
    assert refused.status == 429
    assert sample(metrics, "sluice_streams_active", route="/v1/responses/{response_id}") == 2
    for r in readers:
        r.close()

    async def none_open() -> bool:
        route = "/v1/responses/{response_id}"
        return sample(metrics, "sluice_streams_active", route=route) == 0

    await _poll(none_open)
    await client.post(f"/v1/responses/{rid}/cancel")


async def test_readers_count_against_the_keys_limits(gateway: GatewayFactory) -> None:
    """Row M: a key with ``max_concurrent_streams = 1`` opened 20 followers."""
    secret, entry = make_key("team", max_concurrent_streams=1)
    hang = {"name": "hang", "provider": "sim", "ttft_ms": 5, "itl_ms": 100, "output_tokens": 100}
    client = await gateway(models=[hang], auth={"keys": [entry]})
    auth = {"Authorization": f"Bearer {secret}"}
    body = {**CHAT, "model": "hang"}
    first = await client.post("/v1/chat/completions", json=body, headers={**RESUMABLE, **auth})
    assert first.status == 200
    sid = first.headers["Sluice-Stream-Id"]
    await first.content.readline()
    # The generation holds the key's one slot: a second reader is refused.
    again = await client.get(f"/v1/streams/{sid}", headers=auth)
    assert again.status == 429, await again.text()
    first.close()
    deleted = await client.delete(f"/v1/streams/{sid}", headers=auth)
    assert deleted.status == 200

    async def free() -> bool:
        probe = await client.post("/v1/chat/completions", json={**CHAT, "model": "hang",
                                  "max_tokens": 1}, headers=auth)  # fmt: skip
        await probe.read()
        return probe.status == 200

    await _poll(free)


async def test_a_refused_request_leaves_the_connection_untuned(gateway: GatewayFactory) -> None:
    """Row F: a 429 from admission left the keep-alive connection with the SSE
    socket settings (SO_SNDBUF 8 KiB) for the next request."""
    hang = {"name": "hang", "provider": "sim", "ttft_ms": 5, "itl_ms": 200, "output_tokens": 100}
    client = await gateway(
        models=[hang], server={"max_streams": 1}, stream={"downstream_buffer_bytes": 8192}
    )
    body = {"model": "hang", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    holder = await client.post("/v1/chat/completions", json=body)
    assert holder.status == 200
    port = client.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = orjson.dumps(body)
    for _ in range(2):  # two refusals on one kept-alive connection
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(raw), raw)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), head
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    from gateway.state import ADMISSION

    assert client.server.app[ADMISSION].open_streams == 1
    sndbuf = _server_sndbuf(port, writer.get_extra_info("sockname")[1])
    assert sndbuf > 2 * 8192, sndbuf
    holder.close()
    writer.close()


def _server_sndbuf(port: int, client_port: int) -> int:
    """The server side's SO_SNDBUF on one connection, as ``ss -m`` shows it
    (``tb``: the kernel's send-buffer bound)."""
    import subprocess

    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} and dport = :{client_port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    bounds = [int(part.split("tb")[1].split(",")[0]) for part in out.split() if "tb" in part]
    assert len(bounds) == 1, out
    return bounds[0]


async def _read_events(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    text = await resp.read()
    return [orjson.loads(e.split(b"data: ", 1)[1]) for e in text.split(b"\n\n") if b"data: " in e]


async def test_cancel_and_delete_through_another_replica(
    tmp_path: Path, redis_server: Any, fake_openai: FakeOpenAI
) -> None:
    """Rows E and I: a cancel through another replica ended the stream on a
    delta (its terminal event refused by the store); a DELETE through another
    replica left the generation's upstream open."""
    from tests.gwproc import GatewayProc, replicas_config

    fake_openai.script = Script(
        events=[sse(chunk(f"t{i} ")) for i in range(2000)] + [sse("[DONE]")], itl_s=0.02
    )
    config = replicas_config(tmp_path / "sluice.toml", redis_server.url, fake_openai.base_url)
    async with (
        GatewayProc(config, tmp_path, "a") as a,
        GatewayProc(config, tmp_path, "b") as b,
        aiohttp.ClientSession() as session,
    ):
        body = {"model": "up", "input": "hi", "background": True}
        async with session.post(f"{a.url}/v1/responses", json=body) as resp:
            rid = (await resp.json())["id"]
        async with session.get(f"{a.url}/v1/responses/{rid}?stream=true") as reader:
            await reader.content.readline()
            async with session.post(f"{b.url}/v1/responses/{rid}/cancel") as resp:
                assert (await resp.json())["status"] == "cancelled"
            events = await _read_events(reader)
        assert events[-1]["type"] in ("response.failed", "response.cancelled"), events[-1]
        assert [e["sequence_number"] for e in events] == list(
            range(events[0]["sequence_number"], events[0]["sequence_number"] + len(events))
        )

        async with session.post(f"{a.url}/v1/responses", json=body) as resp:
            second = (await resp.json())["id"]

        async def streaming() -> bool:
            return len(fake_openai.records) == 2 and fake_openai.records[1].events_out > 2

        await _poll(streaming)
        async with session.delete(f"{b.url}/v1/responses/{second}") as resp:
            assert resp.status == 200

        async def upstream_closed() -> bool:
            return fake_openai.records[1].closed_at is not None

        await _poll(upstream_closed, timeout_s=5)
        assert not fake_openai.records[1].completed


async def test_an_unexpected_exception_in_a_detached_generation_ends_its_readers(
    gateway: GatewayFactory,
    metrics: Metrics,
    store: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20 row 8: an exception the simulator raised (ill-typed ``tools``)
    left a resumable stream's stored copy open: the client and any resume
    waited forever, and ``sluice_streams_active`` stayed +1. Any exception
    now ends the stream with an error event and closes the stored copy."""
    from gateway.providers import sim

    def boom(body: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a provider")

    monkeypatch.setattr(sim, "tool_call_for", boom)
    client = await gateway(models=[SIM], **store)
    async with asyncio.timeout(10):
        resp = await client.post("/v1/chat/completions", json=CHAT, headers=RESUMABLE)
        text = await resp.read()
        sid = resp.headers["Sluice-Stream-Id"]
        again = await (await client.get(f"/v1/streams/{sid}")).read()
    assert b'"internal_error"' in text and not text.rstrip().endswith(b"[DONE]"), text
    assert again == text

    async def idle() -> bool:
        return (
            sample(metrics, "sluice_streams_active", route="/v1/chat/completions") == 0
            and sample(metrics, "sluice_detached_streams_active") == 0
        )

    await _poll(idle)


async def test_ill_typed_tools_are_a_400(gateway: GatewayFactory) -> None:
    """Issue 20 row 8: they were a 500 from inside the simulator."""
    client = await gateway(models=[SIM])
    for bad in (
        {"tools": ["x"]},
        {"tools": "x"},
        {"tool_choice": 3},
        {"tools": [{"type": "function", "function": {"name": "f"}}],
         "tool_choice": {"type": "function", "function": "f"}},
    ):  # fmt: skip
        resp = await client.post("/v1/chat/completions", json={**CHAT, **bad})
        assert resp.status == 400, (bad, await resp.text())


def _auth_toml(*keys: dict[str, Any]) -> str:
    out = '[[models]]\nname = "sim"\nprovider = "sim"\n'
    for key in keys:
        out += f'[[auth.keys]]\nname = "{key["name"]}"\nsha256 = "{key["sha256"]}"\n'
    return out


async def test_revoking_a_key_stops_its_generations_and_a_new_secret_owns_nothing(
    gateway: GatewayFactory, metrics: Metrics, tmp_path: Path
) -> None:
    """Issue 20 row 9: after SIGHUP removed a key, its detached generations
    kept running (nobody could cancel them); ownership was by name, so a new
    secret under the same name read, cancelled and deleted the old one's."""
    from gateway.auth import reload_keys

    old_secret, old = make_key("team")
    long = {"name": "sim", "provider": "sim", "ttft_ms": 5, "itl_ms": 50, "output_tokens": 1000}
    client = await gateway(models=[long], auth={"keys": [old]})
    auth = {"Authorization": f"Bearer {old_secret}"}
    resp = await client.post("/v1/chat/completions", json=CHAT, headers={**RESUMABLE, **auth})
    sid = resp.headers["Sluice-Stream-Id"]
    await resp.content.readline()
    resp.close()
    body = {"model": "sim", "input": "hi", "background": True}
    rid = (await (await client.post("/v1/responses", json=body, headers=auth)).json())["id"]
    assert sample(metrics, "sluice_detached_streams_active") == 2

    new_secret, new = make_key("team")  # rotated: same name, new secret
    config = tmp_path / "sluice.toml"
    config.write_text(_auth_toml(new))
    assert reload_keys(client.server.app, str(config)) is True

    async def stopped() -> bool:
        return sample(metrics, "sluice_detached_streams_active") == 0

    await _poll(stopped, timeout_s=5)
    rotated = {"Authorization": f"Bearer {new_secret}"}
    for method, path in (
        ("GET", f"/v1/streams/{sid}"),
        ("DELETE", f"/v1/streams/{sid}"),
        ("GET", f"/v1/responses/{rid}"),
        ("POST", f"/v1/responses/{rid}/cancel"),
        ("DELETE", f"/v1/responses/{rid}"),
    ):
        got = await client.request(method, path, headers=rotated)
        assert got.status == 404, (method, path, got.status)
