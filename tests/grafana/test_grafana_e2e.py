"""End to end: the real gateway (simulator models, plus OpenAI-dialect models on
the load test's mock upstream with injected faults) scraped by a real
Prometheus every second, with the shipped prometheus.yml and alerts.yml.

Real traffic over real sockets, in two waves: an admission probe (every slot
held open, the next requests get 429), normal streams, a reader that
throttles (drains wait), readers that stop reading (dropped as slow_client),
a client that hangs up (upstream cancel), an upstream that errors mid-stream,
one that stalls (idle timeout), a stream past its deadline, an overloaded
upstream (one retry, then 503) and one rescued by a fallback model.

Then every dashboard query, template variable and alert expression is
evaluated through Prometheus's HTTP API: each must be valid and name only
metrics the gateway exports, and must return finite data whose labels fill
its legend, unless it selects only series no traffic here produces
(``NO_DATA_EXPECTED``; the ``shutdown`` termination reason). The alerts the
traffic should trip must go pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

SCRAPE = "1s"
# What Grafana's $__rate_interval becomes here: one window covering all the
# traffic, so every rate sees both waves. Queries are evaluated at one fixed
# instant (after the last scrape), so results do not depend on test order.
RATE_INTERVAL = "2m"
SEND_TIMEOUT_S = 1.0
MAX_STREAMS = 20  # admission limit; the traffic after the admission probe stays below it
WAVES = 2  # counters created in wave 1 increase in wave 2, so rate() sees them
STALLED_PER_WAVE = 2
REJECTED_PER_WAVE = 2

PRODUCED_REASONS = {
    *("completed", "client_disconnected", "slow_client"),
    *("upstream_error", "upstream_stalled", "deadline"),
}  # not "shutdown": that needs the gateway to stop mid-stream
# family -> why no traffic here can produce it (none at present: keep the
# mechanism for metrics added before the traffic can exercise them)
NO_DATA_EXPECTED: dict[str, str] = {
    "sluice_quota_state_errors_total": "needs Redis to fail (tests/test_quota_redis.py does)",
}

# One client key (the rest of the traffic is anonymous): a budget of 1 token,
# so its first request is served and the next ones get 429 insufficient_quota.
E2E_SECRET = "sk-sluice-e2e-not-a-secret"
KEYS_TOML = f"""
[auth]
anonymous = true

[[auth.keys]]
name = "e2e"
sha256 = "{hashlib.sha256(E2E_SECRET.encode()).hexdigest()}"
models = ["sim"]
token_budget = 1
budget_period = "month"
"""

GATEWAY_TOML = """
[server]
host = "127.0.0.1"
max_streams = {max_streams}

[stream]
downstream_buffer_bytes = 16384
send_timeout_s = {send_timeout}

[[models]]  # normal streams
name = "sim"
provider = "sim"
ttft_ms = 20
itl_ms = 5
output_tokens = 30
price = {{ input = 1.5, output = 6.0 }}  # USD per million tokens: the Spend row's traffic

[[models]]  # read by a throttling client: many fast events, drains wait
name = "sim-bulk"
provider = "sim"
ttft_ms = 5
itl_ms = 0
output_tokens = 3000

[[models]]  # read by clients that stop reading: more bytes than any buffer
name = "sim-endless"
provider = "sim"
ttft_ms = 5
itl_ms = 0
output_tokens = 1000000

[[models]]  # clients hang up mid-stream; also holds streams open to fill admission
name = "sim-slow"
provider = "sim"
ttft_ms = 10
itl_ms = 50
output_tokens = 200

[[models]]  # a stream longer than its deadline
name = "sim-deadline"
provider = "sim"
ttft_ms = 10
itl_ms = 20
output_tokens = 200
stream = {{ deadline_s = 0.3 }}

[[models]]  # upstream sends 5 tokens, then an error event
name = "mock-error"
provider = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
upstream_model = "mock-ttft10-itl5-n20-ferror_mid-at5"

[[models]]  # upstream sends 5 tokens, then goes silent
name = "mock-stall"
provider = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
upstream_model = "mock-ttft10-itl5-n20-fstall_mid-at5"
stream = {{ idle_timeout_s = 0.3 }}

[[models]]  # upstream answers 503 before any token, also to the one retry
name = "mock-overloaded"
provider = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
upstream_model = "mock-fhttp_503"
retries = 1
retry_backoff_s = 0.01

[[models]]  # upstream answers 503; the simulator takes over
name = "mock-fallback"
provider = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
upstream_model = "mock-fhttp_503"
fallbacks = ["sim"]

[[models]]  # deployments: one answers 503 (cooldown, trial), one slow with one slot (queue)
name = "mock-routed"
provider = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
retries = 1
deployments = [
  {{ name = "failing", upstream_model = "mock-fhttp_503", weight = 100 }},
  {{ name = "slow", upstream_model = "mock-ttft10-itl50-n20", max_concurrent_streams = 1 }},
]
[models.routing]
strategy = "weighted"
cooldown_failures = 1
cooldown_s = 0.5
queue_size = 1
queue_timeout_s = 20
"""
JSON = {"Content-Type": "application/json"}
MODELS = {
    *("sim", "sim-bulk", "sim-endless", "sim-slow", "sim-deadline"),
    *("mock-error", "mock-stall", "mock-overloaded", "mock-fallback", "mock-routed"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 3.0, accept: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until(what: str, predicate: Any, timeout: float, procs: list[Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            p.check_alive()
        with contextlib.suppress(OSError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            pytest.fail(
                f"{self.name} exited with {self.popen.returncode}:\n"
                + self.log.read_text(errors="replace")[-3000:]
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def start(name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
        )
    return Proc(name, popen, log)


# --------------------------------------------------------------------- traffic


def chat_body(model: str, **extra: Any) -> bytes:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps(body | extra).encode()


def raw_request(port: int, body: bytes) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def raw_connect(port: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a small receive window, set before connect so the handshake advertises it
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def recv_until(sock: socket.socket, needle: bytes, limit: int = 1 << 20) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    while needle not in got:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise AssertionError(f"connection closed before {needle!r}: {got[:300]!r}")
        got += chunk
        assert len(got) < limit
    return got


async def normal_stream(session: aiohttp.ClientSession, url: str, usage: bool) -> None:
    extra = {"stream_options": {"include_usage": True}} if usage else {}
    async with session.post(url, data=chat_body("sim", **extra), headers=JSON) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert "data: [DONE]" in text


async def resumed_stream(session: aiohttp.ClientSession, url: str) -> None:
    """A resumable stream (a detached generation), read whole, then resumed
    after its third event (a resume that replays the stored rest)."""
    headers = {**JSON, "Sluice-Resumable": "true"}
    async with session.post(url, data=chat_body("sim"), headers=headers) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        sid = resp.headers["Sluice-Stream-Id"]
    base = url.removesuffix("/v1/chat/completions")
    async with session.get(f"{base}/v1/streams/{sid}", headers={"Last-Event-ID": "3"}) as resp:
        rest = await resp.text()
        assert resp.status == 200, rest
    assert rest.startswith("id: 4\n") and text.endswith(rest), rest[:200]


async def upstream_error_stream(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url, data=chat_body("mock-error"), headers=JSON) as resp:
        text = await resp.text()
        assert resp.status == 200, text  # committed before the upstream failed
        assert '"error"' in text, text[-500:]


async def overloaded_request(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url, data=chat_body("mock-overloaded"), headers=JSON) as resp:
        assert resp.status == 503, await resp.text()  # after one retry


async def failed_stream(session: aiohttp.ClientSession, url: str, model: str) -> None:
    """A stream the gateway ends with an error event (stall, deadline)."""
    async with session.post(url, data=chat_body(model), headers=JSON) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert '"error"' in text and "data: [DONE]" not in text, text[-500:]


async def fallback_stream(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url, data=chat_body("mock-fallback"), headers=JSON) as resp:
        text = await resp.text()
        assert resp.status == 200, text  # served by the "sim" fallback
        assert "data: [DONE]" in text


async def routed_requests(session: aiohttp.ClientSession, base: str, url: str) -> None:
    """``mock-routed``: the first stream fails on ``failing`` (503: cooldown)
    and is served by ``slow``; the second waits in the queue for ``slow``'s
    one slot; the third finds the queue full (429 deployments_busy)."""
    first = asyncio.create_task(fallback_like(session, url, "mock-routed"))
    dep = {"model": "mock-routed", "deployment": "slow"}
    await wait_gateway_metric(session, base, "sluice_deployment_streams_open", dep,
                              lambda v: v == 1)  # fmt: skip
    second = asyncio.create_task(fallback_like(session, url, "mock-routed"))
    await wait_gateway_metric(session, base, "sluice_deployment_queue_length",
                              {"model": "mock-routed"}, lambda v: v == 1)  # fmt: skip
    async with session.post(url, data=chat_body("mock-routed"), headers=JSON) as resp:
        assert resp.status == 429 and "deployments_busy" in await resp.text()
    await asyncio.gather(first, second)


async def fallback_like(session: aiohttp.ClientSession, url: str, model: str) -> None:
    async with session.post(url, data=chat_body(model), headers=JSON) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert "data: [DONE]" in text


async def keyed_requests(session: aiohttp.ClientSession, url: str, number: int) -> None:
    """The client key: served until its budget is spent, then 429; a model
    outside its list, 403; a wrong key, 401."""
    bearer = {**JSON, "Authorization": f"Bearer {E2E_SECRET}"}
    async with session.post(url, data=chat_body("sim"), headers=bearer) as resp:
        assert resp.status == (200 if number == 1 else 429), await resp.text()
        await resp.read()
    async with session.post(url, data=chat_body("sim"), headers=bearer) as resp:
        assert resp.status == 429 and "insufficient_quota" in await resp.text()
    async with session.post(url, data=chat_body("sim-slow"), headers=bearer) as resp:
        assert resp.status == 403, await resp.text()
    wrong = {**JSON, "Authorization": "Bearer sk-sluice-wrong"}
    async with session.post(url, data=chat_body("sim"), headers=wrong) as resp:
        assert resp.status == 401, await resp.text()


async def throttled_reader(port: int) -> int:
    """Reads the whole stream, but only 8 KiB every 10 ms: drains wait and succeed."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port, rcvbuf=4096)
    total = b""
    try:
        await loop.sock_sendall(sock, raw_request(port, chat_body("sim-bulk")))
        while True:
            chunk = await loop.sock_recv(sock, 8192)
            if not chunk:
                break
            total += chunk
            await asyncio.sleep(0.01)
    finally:
        sock.close()
    assert total.startswith(b"HTTP/1.1 200"), total[:200]
    assert b"data: [DONE]" in total
    return len(total)


async def stalled_reader(port: int, model: str = "sim-endless") -> socket.socket:
    """Starts a stream, reads its first event, then never reads again."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port, rcvbuf=4096)
    try:
        await loop.sock_sendall(sock, raw_request(port, chat_body(model)))
        head = await recv_until(sock, b"data: ")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    except BaseException:
        sock.close()
        raise
    return sock


async def disconnecting_client(port: int) -> None:
    """Reads three events of a slow stream, then hangs up."""
    loop = asyncio.get_running_loop()
    sock = await raw_connect(port, rcvbuf=65536)
    try:
        await loop.sock_sendall(sock, raw_request(port, chat_body("sim-slow")))
        got = b""
        while got.count(b"data: ") < 3:
            got += await recv_until(sock, b"\n\n")
        assert got.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def metric_value(text: str, name: str, labels: dict[str, str]) -> float:
    """One sample from a text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_gateway_metric(
    session: aiohttp.ClientSession, base: str, name: str, labels: dict[str, str], want: Any
) -> None:
    """Poll the gateway's own /metrics until ``want(value)``."""
    async with asyncio.timeout(20):
        while True:
            async with session.get(f"{base}/metrics", headers={"Accept": "text/plain"}) as r:
                if want(metric_value(await r.text(), name, labels)):
                    return
            await asyncio.sleep(0.1)


async def admission_probe(session: aiohttp.ClientSession, base: str, port: int) -> None:
    """Fill every admission slot with open streams; the next requests get 429."""
    holders: list[socket.socket] = []
    try:
        for _ in range(MAX_STREAMS):
            holders.append(await stalled_reader(port, model="sim-slow"))
        for _ in range(REJECTED_PER_WAVE):
            url = f"{base}/v1/chat/completions"
            async with session.post(url, data=chat_body("sim"), headers=JSON) as r:
                assert r.status == 429, await r.text()
                assert "Retry-After" in r.headers
    finally:
        for sock in holders:
            sock.close()  # the holders count as client_disconnected
    route = {"route": "/v1/chat/completions"}
    await wait_gateway_metric(session, base, "sluice_streams_active", route, lambda v: v == 0)


async def wave(gw_port: int, number: int) -> None:
    base = f"http://127.0.0.1:{gw_port}"
    url = f"{base}/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.timeout(45):
        await admission_probe(session, base, gw_port)
        await keyed_requests(session, url, number)
        stalled = await asyncio.gather(
            *[stalled_reader(gw_port) for _ in range(STALLED_PER_WAVE)], return_exceptions=True
        )
        try:
            for s in stalled:
                if isinstance(s, BaseException):
                    raise s
            await asyncio.gather(
                *[normal_stream(session, url, usage=i % 2 == 0) for i in range(6)],
                throttled_reader(gw_port),
                disconnecting_client(gw_port),
                upstream_error_stream(session, url),
                resumed_stream(session, url),
                failed_stream(session, url, "mock-stall"),
                failed_stream(session, url, "sim-deadline"),
                overloaded_request(session, url),
                fallback_stream(session, url),
                routed_requests(session, base, url),
            )
            # The gateway drops a reader that took nothing for send_timeout_s.
            await wait_gateway_metric(
                session,
                base,
                "sluice_stream_terminations_total",
                {"model": "sim-endless", "provider": "sim", "reason": "slow_client"},
                lambda v: v >= STALLED_PER_WAVE * number,
            )
        finally:
            for s in stalled:
                if isinstance(s, socket.socket):
                    s.close()


# --------------------------------------------------------------------- the stack


@dataclass
class Stack:
    prom: str
    gateway: str
    eval_time: float = 0.0
    exposition: str = ""
    procs: list[Proc] = field(default_factory=list)

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(f"{self.prom}{path}?{query}", timeout=10)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", f"{path} {params}: {doc}"
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr, time=f"{self.eval_time:.3f}")
        assert data["resultType"] == "vector", data
        return data["result"]

    def exported(self) -> dict[str, str]:
        """Series names the gateway's /metrics declares, with their family type."""
        names: dict[str, str] = {}
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", self.exposition, re.M):
            if kind == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    names[name + suffix] = kind
            elif kind == "counter" and not name.endswith("_total"):
                names[name + "_total"] = kind
            else:
                names[name] = kind
        return names


def prometheus_config(kit: Any, gw_port: int) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at the test gateway, scraping every second."""
    config = yaml.safe_load((kit.grafana / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=SCRAPE, scrape_timeout=SCRAPE, evaluation_interval=SCRAPE
    )
    config["rule_files"] = [str(kit.grafana / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "sluice"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gw_port}"]}]
    return config


@pytest.fixture(scope="module")
def stack(
    kit: Any, prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    mock_port, gw_port, prom_port = free_port(), free_port(), free_port()
    (workdir / "gateway.toml").write_text(
        GATEWAY_TOML.format(
            mock_port=mock_port, send_timeout=SEND_TIMEOUT_S, max_streams=MAX_STREAMS
        )
        + KEYS_TOML
    )
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(kit, gw_port)))
    env = dict(os.environ, SLUICE_E2E_UPSTREAM_KEY="e2e-not-a-secret", PYTHONPATH=str(kit.repo))
    py = sys.executable
    s = Stack(prom=f"http://127.0.0.1:{prom_port}", gateway=f"http://127.0.0.1:{gw_port}")
    try:
        s.procs.append(
            start(
                "mock-upstream",
                [
                    py,
                    "-m",
                    "loadtest.mock.upstream",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mock_port),
                ],
                workdir,
                env,
            )
        )
        s.procs.append(
            start(
                "gateway",
                [
                    *(py, "-m", "gateway", "--config", str(workdir / "gateway.toml")),
                    *("--host", "127.0.0.1", "--port", str(gw_port), "--log-level", "warning"),
                ],
                workdir,
                env,
            )
        )
        s.procs.append(
            start(
                "prometheus",
                [
                    prometheus_bin,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                workdir,
            )
        )
        wait_until(
            "the gateway to be ready",
            lambda: http_get(f"{s.gateway}/readyz")[0] == 200,
            30,
            s.procs,
        )
        wait_until(
            "the mock upstream to listen",
            lambda: socket.create_connection(("127.0.0.1", mock_port), 1).close() or True,
            30,
            s.procs,
        )
        wait_until(
            "Prometheus to be ready", lambda: http_get(f"{s.prom}/-/ready")[0] == 200, 30, s.procs
        )

        def scraped_after(t: float) -> bool:
            # A successful scrape that started after t. (timestamp() must wrap
            # the selector itself: after `== 1` it would return the query time.)
            up = s.api("/api/v1/query", query='up{job="sluice"}')["result"]
            at = s.api("/api/v1/query", query='timestamp(up{job="sluice"})')["result"]
            return bool(up and at) and up[0]["value"][1] == "1" and float(at[0]["value"][1]) > t

        wait_until("the first successful scrape", lambda: scraped_after(0), 30, s.procs)
        for number in range(1, WAVES + 1):
            asyncio.run(wave(gw_port, number))
            done = time.time()
            wait_until(
                f"a scrape after wave {number}", lambda t=done: scraped_after(t), 15, s.procs
            )
        s.eval_time = time.time()
        s.exposition = http_get(f"{s.gateway}/metrics", accept="text/plain")[1].decode()
    except BaseException:
        for p in s.procs:  # pytest shows this with the setup error
            tail = p.log.read_text(errors="replace")[-2000:] if p.log.exists() else ""
            print(f"----- {p.name} log (tail) -----\n{tail}", file=sys.stderr)
        for p in reversed(s.procs):
            p.stop()
        raise
    try:
        yield s
    finally:
        for p in reversed(s.procs):
            p.stop()


# --------------------------------------------------------------------- checks


def expects_data(kit: Any, sel: Any) -> bool:
    family = kit.series_to_family(sel.name)
    if family in NO_DATA_EXPECTED:
        return False
    for label, op, value in sel.matchers:
        if label == "reason" and family == "sluice_stream_terminations_total":
            hit = any(re.fullmatch(value, r) for r in PRODUCED_REASONS)
            if (op == "=~" and not hit) or (op == "=" and value not in PRODUCED_REASONS):
                return False
    return True


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in result if math.isfinite(float(r["value"][1]))]


def check_query(stack: Stack, kit: Any, expr: str, legend: str = "") -> bool:
    """Evaluate ``expr``; True if it was verified with data, False if none could exist."""
    selectors, _ = kit.parse_query(expr)
    exported = stack.exported()
    for sel in selectors:
        if sel.name != "up":
            assert sel.name in exported, f"the gateway does not export {sel.name} ({expr})"
    result = stack.query(expr)
    if not all(expects_data(kit, sel) for sel in selectors):
        return False
    for sel in selectors:
        assert stack.query(f"count({sel.promql()})"), f"traffic produced no {sel.promql()}"
    good = finite(result)
    assert good, f"no finite value for {expr}: {result}"
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
        for sample in good:
            assert label in sample["metric"], f"legend {{{{{label}}}}} unfilled by {expr}"
    return True


def test_gateway_exports_the_metric_contract(stack: Stack, kit: Any) -> None:
    exported = stack.exported()
    missing = []
    for family, (kind, _labels) in kit.contract.items():
        if family == "up":
            continue
        names = (
            [family + s for s in ("_bucket", "_sum", "_count")] if kind == "histogram" else [family]
        )
        for name in names:
            if exported.get(name) != kind:
                missing.append(f"{name} ({kind}, got {exported.get(name)})")
    assert not missing, f"gateway /metrics lacks: {missing}"


def test_prometheus_scraped_the_gateway(stack: Stack) -> None:
    targets = stack.api("/api/v1/targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    assert targets[0]["lastError"] == ""


def test_traffic_reached_the_dashboards_signals(stack: Stack) -> None:
    # The traffic did what it was meant to, as Prometheus saw it.
    def total(expr: str) -> float:
        result = stack.query(f"sum({expr})")
        return float(result[0]["value"][1]) if result else 0.0

    term = "sluice_stream_terminations_total"
    assert total(f'{term}{{reason="slow_client"}}') >= WAVES * STALLED_PER_WAVE
    assert total(f'{term}{{reason="client_disconnected"}}') >= WAVES
    assert total(f'{term}{{reason="upstream_error",provider="openai"}}') >= 2 * WAVES
    assert total(f'{term}{{reason="upstream_stalled",model="mock-stall"}}') >= WAVES
    assert total(f'{term}{{reason="deadline",model="sim-deadline"}}') >= WAVES
    assert total(f'{term}{{reason="completed",model="sim"}}') >= WAVES * 7  # + fallbacks
    assert total("sluice_backpressure_waits_total") > 0
    assert total("sluice_upstream_cancel_seconds_count") >= WAVES * (1 + MAX_STREAMS)
    assert total('sluice_requests_total{status="503"}') >= WAVES
    assert total('sluice_requests_total{status="429"}') >= WAVES * REJECTED_PER_WAVE
    retries = "sluice_upstream_retries_total"
    assert total(f'{retries}{{provider="openai",reason!="fallback"}}') >= WAVES
    assert total(f'{retries}{{provider="openai",reason="fallback"}}') >= WAVES
    rejected = 'sluice_admission_rejections_total{reason="max_streams"}'
    assert total(rejected) >= WAVES * REJECTED_PER_WAVE
    assert total("sluice_input_tokens_total") > 0
    assert total('sluice_key_tokens_total{key="e2e"}') > 0
    assert total('sluice_key_rejections_total{key="e2e",limit="budget"}') >= 2 * WAVES - 1
    assert total('sluice_key_rejections_total{key="e2e",limit="model"}') >= WAVES
    assert total('sluice_auth_failures_total{reason="unknown"}') >= WAVES
    assert total("sluice_streams_active") == 0  # every stream ended
    assert total("sluice_write_buffer_bytes") == 0  # nothing left queued


def test_template_variables_resolve(stack: Stack, dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # a stream a fallback served is recorded under the fallback's model
    served = MODELS - {"mock-fallback"}
    for name, want in [("model", served), ("provider", {"sim", "openai"})]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variables[name]["definition"])
        assert m
        match = m.group(1).replace("$model", ".*")
        values = stack.api(f"/api/v1/label/{m.group(2)}/values", **{"match[]": match})
        assert set(values) >= want, (name, values)


def test_panel_queries(stack: Stack, kit: Any, panel: Any) -> None:
    for target in panel.raw["targets"]:
        expr = kit.substitute(target["expr"], RATE_INTERVAL)
        # Must return data unless it selects only series no traffic here makes
        # (NO_DATA_EXPECTED, or a termination reason outside PRODUCED_REASONS).
        check_query(stack, kit, expr, target.get("legendFormat", ""))


def test_alert_expressions(stack: Stack, kit: Any, alert_rule: dict[str, Any]) -> None:
    expr = alert_rule["expr"]
    fired = stack.query(expr)  # valid against real series
    signal, threshold = kit.split_threshold(expr)
    if "absent(" in signal:
        assert fired == [], "the gateway is being scraped, so nothing is absent"
        return
    check_query(stack, kit, signal)
    if alert_rule["alert"] == "SluiceGatewayDown":
        assert fired == [] and threshold == "== 0"


def test_alerts_go_pending_on_real_traffic(stack: Stack, kit: Any) -> None:
    # Prometheus evaluates the shipped rules every second against the real
    # series: the stalled readers, the failing upstream and the admission
    # rejections must show.
    want = {"SluiceSlowClientDrops", "SluiceUpstreamErrorRatioHigh", "SluiceAdmissionRejections"}
    deadline = time.monotonic() + 15
    active: dict[str, str] = {}
    while time.monotonic() < deadline:
        alerts = stack.api("/api/v1/alerts")["alerts"]
        active = {a["labels"]["alertname"]: a["state"] for a in alerts}
        if want <= set(active):
            break
        time.sleep(0.25)
    assert want <= set(active), active
    assert "SluiceGatewayDown" not in active
    assert "SluiceGatewayTargetMissing" not in active
    groups = stack.api("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} == {r["alert"] for r in kit.load_alert_rules()}
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy
