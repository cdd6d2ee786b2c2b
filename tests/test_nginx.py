"""Sluice behind a real nginx running the shipped ``deploy/nginx/sluice.conf``
(rendered only for its listen port, the replica list and, where a test says
so, one setting): tokens pass one by one, a stalled client still pauses the
upstream, a client that leaves cancels it, and heartbeats outlast
``proxy_read_timeout``. Each property has a control that shows the test can
fail. Figures print with ``pytest -s``; docs/deploy.md records them."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.metrics import Metrics
from gateway.sse import SSE_HEADERS
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model, upstream_plateau
from tests.nginx_server import NginxServer, render_site, start_nginx
from tests.rawclient import RawSSEClient

CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]
PACED_N = 20
PACED_ITL_MS = 50
SIM_PACED = {"name": "sim", "provider": "sim", "ttft_ms": 20, "itl_ms": PACED_ITL_MS,
             "output_tokens": PACED_N}  # fmt: skip


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[Callable[..., NginxServer]]:
    """``nginx_for(gateway_port, edit=None)``: a started nginx (stopped after the test)."""
    started: list[NginxServer] = []

    def make(*upstreams: int, edit: Callable[[str], str] | None = None) -> NginxServer:
        server = start_nginx(tmp_path / f"nginx{len(started)}", list(upstreams), edit)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def in_location(directive: str) -> Callable[[str], str]:
    """An ``edit`` adding ``directive`` to the site's ``location /``."""

    def edit(text: str) -> str:
        anchor = "proxy_pass http://sluice;"
        assert anchor in text
        return text.replace(anchor, f"{anchor}\n        {directive}")

    return edit


@dataclass
class TimedResponse:
    """A raw HTTP/1.1 exchange whose body reads are timestamped (perf_counter)."""

    status: int = 0
    head: bytes = b""
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.reads)

    def data_batches(self) -> list[tuple[float, int]]:
        """(time, count) for each read that carried at least one ``data:`` line."""
        out = []
        for t, data in self.reads:
            n = data.count(b"data: ")
            if n:
                out.append((t, n))
        return out


def request_bytes(method: str, port: int, path: str, body: Any = None,
                  headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    payload = orjson.dumps(body) if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + payload


async def timed_exchange(port: int, method: str, path: str, body: Any = None,
                         headers: dict[str, str] | None = None,
                         timeout_s: float = 30.0) -> TimedResponse:  # fmt: skip
    """Send one request with ``Connection: close`` and read until EOF,
    timestamping every ``recv`` (the reads are the batches nginx wrote)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    out = TimedResponse()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, request_bytes(method, port, path, body, headers))
        buf = b""
        async with asyncio.timeout(timeout_s):
            while b"\r\n\r\n" not in buf:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    raise ConnectionError(f"closed before the response head: {buf!r}")
                buf += data
            out.head, _, rest = buf.partition(b"\r\n\r\n")
            out.status = int(out.head.split()[1])
            if rest:
                out.reads.append((time.perf_counter(), rest))
            while data := await loop.sock_recv(sock, 65536):
                out.reads.append((time.perf_counter(), data))
    finally:
        sock.close()
    return out


ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (CHAT, {"model": "sim", "stream": True, "messages": MSGS}),
    "messages": ("/v1/messages", {"model": "sim", "stream": True, "max_tokens": 100,
                                  "messages": MSGS}),
    "responses": ("/v1/responses", {"model": "sim", "stream": True, "input": "hi"}),
}  # fmt: skip


async def _paced_read(client: TestClient[Any, Any], port: int, route: str) -> TimedResponse:
    """One paced stream of ``route`` read through ``port``; for ``streams`` a
    resumable chat is started first and the rest read from GET /v1/streams/{id}."""
    if route != "streams":
        path, body = ROUTES[route]
        return await timed_exchange(port, "POST", path, body)
    start = await client.post(
        CHAT, json=ROUTES["chat"][1], headers={"Sluice-Resumable": "true"}
    )  # started directly on the gateway; only the resumption goes through `port`
    sid = start.headers["Sluice-Stream-Id"]
    await start.content.readuntil(b"\n\n")
    start.close()
    return await timed_exchange(port, "GET", f"/v1/streams/{sid}", headers={"Last-Event-ID": "1"})


@pytest.mark.parametrize("route", ["chat", "messages", "responses", "streams"])
async def test_every_sse_route_says_x_accel_buffering_no(
    gateway: GatewayFactory, route: str
) -> None:
    """nginx consumes X-Accel-* headers, so this is checked on the gateway itself."""
    client = await gateway(models=[SIM_PACED])
    resp = await _paced_read(client, client.server.port, route)  # type: ignore[arg-type]
    assert resp.status == 200, resp.head
    assert b"\r\nX-Accel-Buffering: no" in resp.head, resp.head
    assert SSE_HEADERS["X-Accel-Buffering"] == "no"


HTTP_1_0 = "proxy_http_version 1.1;", "proxy_http_version 1.0;"


def http_1_0(text: str) -> str:
    """nginx's default HTTP/1.0 toward the gateway (the body is not chunked)."""
    assert HTTP_1_0[0] in text
    return text.replace(*HTTP_1_0)


def _spread(resp: TimedResponse, label: str) -> list[tuple[float, int]]:
    batches = resp.data_batches()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(batches)] or [0.0]
    print(
        f"\n{label}: {len(batches)} reads carried the ~{PACED_N} tokens; inter-arrival"
        f" p50 {statistics.median(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms"
    )
    return batches


@pytest.mark.parametrize(
    ("route", "http"),
    [("chat", "shipped"), ("messages", "shipped"), ("responses", "shipped"),
     ("streams", "shipped"), ("chat", "http_1_0")],
)  # fmt: skip
async def test_tokens_pass_nginx_one_by_one(
    gateway: GatewayFactory, nginx_for: Callable[..., NginxServer], route: str, http: str
) -> None:
    """Default proxy_buffering (on), no SSE setting in the location: the
    gateway's X-Accel-Buffering: no makes nginx pass each event as it comes,
    with the shipped HTTP/1.1 and with nginx's default HTTP/1.0 alike."""
    client = await gateway(models=[SIM_PACED])
    nginx = nginx_for(client.server.port, edit=http_1_0 if http == "http_1_0" else None)
    resp = await _paced_read(client, nginx.port, route)
    assert resp.status == 200, resp.head
    assert b"X-Accel-Buffering" not in resp.head  # nginx consumed it
    batches = _spread(resp, f"{route} ({http})")
    # ~20 tokens 50 ms apart: nearly one read per token (two may coalesce on a
    # busy machine), spread over the stream's length, never one burst.
    assert len(batches) >= PACED_N * 3 // 4
    assert batches[-1][0] - batches[0][0] >= (PACED_N // 2) * PACED_ITL_MS / 1000


async def test_control_nginx_buffers_when_the_header_is_ignored(
    gateway: GatewayFactory, nginx_for: Callable[..., NginxServer]
) -> None:
    """The control: with ``proxy_ignore_headers X-Accel-Buffering`` nginx
    buffers the response like any other, and over its default HTTP/1.0 the
    tokens come in a burst at the end. (Over HTTP/1.1 nginx 1.22 passes each
    upstream chunk even when buffering, as long as the client keeps up; what
    buffering then costs is backpressure: the stalled-client test below.)"""
    client = await gateway(models=[SIM_PACED])
    edit = in_location("proxy_ignore_headers X-Accel-Buffering;")
    nginx = nginx_for(client.server.port, edit=lambda text: http_1_0(edit(text)))
    resp = await _paced_read(client, nginx.port, "chat")
    assert resp.status == 200
    batches = _spread(resp, "control: header ignored, HTTP/1.0")
    assert resp.body.count(b"data: ") >= PACED_N
    assert len(batches) <= 3


# --- 2. a stalled client behind nginx ---------------------------------------

FLOOD_EVENTS = 20_000
PAD = "x" * 200
FAKE_SNDBUF = 16384
DOWNSTREAM = 65536
UPSTREAM_RCVBUF = 65536  # [models] upstream_buffer_bytes default
CLIENT_RCVBUF = 4096
PROXY_BUFFER = 4096  # proxy_buffer_size default: one page


def _setting(text: str, pattern: str) -> int:
    """A size like ``sndbuf=32k`` from the rendered site, in bytes."""
    m = re.search(pattern + r"(\d+)([km]?)", text)
    assert m, pattern
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[m.group(2)]


def lead_bound(site: str) -> tuple[int, dict[str, int]]:
    """What may sit between the upstream and a stalled client, in bytes, from
    the configuration. Linux doubles every SO_SNDBUF/SO_RCVBUF it is given.
    nginx's receive queue from the gateway has no nginx setting: the kernel
    starts it at net.ipv4.tcp_rmem's default and autotunes it (measured 2x
    the default); allowed here: 4x."""
    rmem_default = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
    terms = {
        "upstream send queue (fake's SO_SNDBUF x2)": 2 * FAKE_SNDBUF,
        "gateway's upstream receive queue (upstream_buffer_bytes x2)": 2 * UPSTREAM_RCVBUF,
        "gateway toward nginx (downstream_buffer_bytes, kernel 1x + asyncio 1/4)": (
            DOWNSTREAM * 5 // 4
        ),
        "nginx's receive queue from the gateway (autotuned; 4x tcp_rmem default)": (
            4 * rmem_default
        ),
        "nginx user space (proxy_buffer_size)": PROXY_BUFFER,
        "nginx toward the client (listen sndbuf x2)": 2 * _setting(site, r"sndbuf="),
        "client receive queue (SO_RCVBUF x2)": 2 * CLIENT_RCVBUF,
    }  # fmt: skip
    return sum(terms.values()), terms


def no_listen_sndbuf(text: str) -> str:
    out = re.sub(r"(listen [^;]*) sndbuf=\w+;", r"\1;", text)
    assert out != text
    return out


@pytest.mark.parametrize("variant", ["shipped", "no_listen_sndbuf", "header_ignored"])
async def test_stalled_client_behind_nginx_pauses_the_upstream(
    gateway: GatewayFactory,
    nginx_for: Callable[..., NginxServer],
    fake_openai: FakeOpenAI,
    variant: str,
) -> None:
    """A client that stops reading: the upstream's lead (bytes it got out
    beyond what the client read) stays under the bound the configuration
    gives; the two controls show which settings make the bound: without the
    listen sndbuf the kernel autotunes nginx's client queue, and with the
    header ignored nginx reads the whole stream ahead (to a temp file)."""
    events = [sse(chunk(f"{i} {PAD}")) for i in range(FLOOD_EVENTS)] + [sse("[DONE]")]
    fake_openai.script = Script(events=events, sndbuf=FAKE_SNDBUF)
    offered = sum(len(e) for e in events)
    client = await gateway(
        models=[openai_model(fake_openai, stream_usage=False)],
        stream={"downstream_buffer_bytes": DOWNSTREAM},
    )
    edit = {
        "shipped": None,
        "no_listen_sndbuf": no_listen_sndbuf,
        "header_ignored": in_location("proxy_ignore_headers X-Accel-Buffering;"),
    }[variant]
    nginx = nginx_for(client.server.port, edit=edit)
    bound, terms = lead_bound(render_site(nginx.port))
    body = {"model": "up", "stream": True, "messages": MSGS}
    raw = await RawSSEClient.open("127.0.0.1", nginx.port, CHAT, body, rcvbuf=CLIENT_RCVBUF)
    try:
        assert raw.status == 200
        first = await raw.events(limit=1)
        lead = await upstream_plateau(fake_openai)
        print(f"\n{variant}: upstream {lead} bytes ahead of a stalled client"
              f" (bound {bound}; offered {offered})")  # fmt: skip
        if variant == "shipped":
            for name, size in terms.items():
                print(f"  {size:>8}  {name}")
            assert lead < bound
            assert not fake_openai.records[0].completed
            rest = await raw.events()
            assert len(first + rest) == FLOOD_EVENTS + 1  # then everything, in order
            assert rest[-1] == b"data: [DONE]"
            assert f'"content":"{FLOOD_EVENTS - 1} '.encode() in rest[-2]
        elif variant == "no_listen_sndbuf":
            assert lead > bound
        else:
            assert lead == offered  # buffered: nginx took the whole stream
    finally:
        raw.close()


# --- 3. a client that leaves -------------------------------------------------


def _terminations(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "sluice_stream_terminations_total",
        {"model": "up", "provider": "openai", "reason": reason},
    )
    return value or 0.0


async def _leave_after_first_event(port: int, fake: FakeOpenAI) -> tuple[float, int]:
    """Read one event through ``port``, close; wait until the fake upstream
    sees its connection close. Returns (seconds from the client's close,
    events the fake had written by then)."""
    n = len(fake.records)
    raw = await RawSSEClient.open("127.0.0.1", port, CHAT, {"model": "up", "stream": True,
                                                            "messages": MSGS})  # fmt: skip
    assert raw.status == 200
    await raw.events(limit=1)
    closed_at = time.perf_counter()
    raw.close()
    record = fake.records[n]
    async with asyncio.timeout(10):
        while record.closed_at is None:
            await asyncio.sleep(0.001)
    assert not record.completed
    return record.closed_at - closed_at, record.events_out


SLOW_EVENTS = Script(events=[sse(chunk(f"t{i}")) for i in range(10)] + [sse("[DONE]")],
                     itl_s=0.5)  # fmt: skip


async def test_a_client_leaving_nginx_cancels_the_upstream(
    gateway: GatewayFactory,
    nginx_for: Callable[..., NginxServer],
    fake_openai: FakeOpenAI,
    metrics: Metrics,
) -> None:
    """proxy_ignore_client_abort off (the default, stated in the file): the
    client closes, nginx closes its connection to the gateway at once, the
    gateway records client_disconnected and closes the upstream before its
    next event (due 0.5 s later). Latency: the client's close -> the fake
    upstream sees its connection close (one process, one clock)."""
    tries = 20
    fake_openai.script = SLOW_EVENTS
    client = await gateway(models=[openai_model(fake_openai)])
    nginx = nginx_for(client.server.port)
    latencies = []
    for _ in range(tries):
        latency, events_out = await _leave_after_first_event(nginx.port, fake_openai)
        assert events_out == 1
        latencies.append(latency)
    async with asyncio.timeout(10):
        while _terminations(metrics, "client_disconnected") < tries:
            await asyncio.sleep(0.01)
    ms = sorted(x * 1000 for x in latencies)
    print(f"\ncancel through nginx, {tries} tries: p50 {statistics.median(ms):.2f} ms,"
          f" max {ms[-1]:.2f} ms")  # fmt: skip


async def test_control_ignore_client_abort_delays_the_cancel(
    gateway: GatewayFactory, nginx_for: Callable[..., NginxServer], fake_openai: FakeOpenAI
) -> None:
    """The control: with ``proxy_ignore_client_abort on`` nginx does not
    watch the client; it notices only when writing the next event fails, so
    the upstream wrote another event after the client left."""
    fake_openai.script = SLOW_EVENTS
    client = await gateway(models=[openai_model(fake_openai)])
    edit = lambda text: text.replace(  # noqa: E731
        "proxy_ignore_client_abort off;", "proxy_ignore_client_abort on;"
    )
    nginx = nginx_for(client.server.port, edit=edit)
    latency, events_out = await _leave_after_first_event(nginx.port, fake_openai)
    print(f"\ncontrol: upstream closed {latency * 1000:.0f} ms after the client, "
          f"{events_out} events out")  # fmt: skip
    assert events_out >= 2


# --- 4. heartbeats vs proxy_read_timeout -------------------------------------

READ_TIMEOUT_S = 1


def short_read_timeout(text: str) -> str:
    out = re.sub(r"proxy_read_timeout \w+;", f"proxy_read_timeout {READ_TIMEOUT_S}s;", text)
    assert out != text
    return out


@pytest.mark.parametrize("heartbeat_s", [0.25, 60.0])
async def test_heartbeats_outlast_proxy_read_timeout(
    gateway: GatewayFactory,
    nginx_for: Callable[..., NginxServer],
    fake_openai: FakeOpenAI,
    heartbeat_s: float,
) -> None:
    """First token after 3x proxy_read_timeout: with heartbeats more often
    than the timeout the stream completes; with heartbeats slower than it
    (the control) nginx gives up first: 504, and the upstream is closed."""
    fake_openai.script = Script(
        events=[sse(chunk("late")), sse(chunk(" token")), sse("[DONE]")],
        ttft_s=3 * READ_TIMEOUT_S,
    )
    client = await gateway(
        models=[openai_model(fake_openai)], stream={"heartbeat_interval_s": heartbeat_s}
    )
    nginx = nginx_for(client.server.port, edit=short_read_timeout)
    t0 = time.perf_counter()
    resp = await timed_exchange(
        nginx.port, "POST", CHAT, {"model": "up", "stream": True, "messages": MSGS}
    )
    took = time.perf_counter() - t0
    text = resp.body
    print(f"\nheartbeat {heartbeat_s}s: status {resp.status} after {took:.2f}s,"
          f" {text.count(b': ping')} pings")  # fmt: skip
    if heartbeat_s < READ_TIMEOUT_S:
        assert resp.status == 200
        assert text.count(b": ping") >= 2
        assert b'"content":"late"' in text and b"data: [DONE]" in text
    else:
        assert resp.status == 504
        record = fake_openai.records[0]
        async with asyncio.timeout(10):
            while record.closed_at is None:
                await asyncio.sleep(0.01)
