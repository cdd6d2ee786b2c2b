"""The backpressure proof: the same stalled clients against the unbounded
baseline relay and against Sluice, side by side, RSS sampled for both.

The upstream streams as fast as it is allowed (``itl_ms=0``) for as long as a
request may ask (``max_tokens`` at the gateway's limit, 1,000,000 tokens of
512 bytes), so every byte a relay accepts and cannot deliver stays in that
relay. The baseline is stopped early once its RSS passes ``rss_limit_bytes``.

Each side gets ``clients`` stalled streams, each opened once (a refused
request is counted as an error, never retried): connect with a 4 KiB
``SO_RCVBUF``, send the request, read until the 200 head and the first content
event arrived, then never read again. A stream is *held* while its TCP
connection is still ``ESTABLISHED`` (``TCP_INFO``, Linux): the relay neither
closed nor reset it. Held streams are counted at each side's last memory
sample: before the baseline is stopped, at the end of the duration for Sluice.
The verdict (:func:`loadtest.report.common.backpressure_verdict`, a
:class:`~loadtest.report.common.Check` like every report's) is "missed" unless
every stream of both sides was held and no request failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from loadtest.client.profiles import Target
from loadtest.client.sampler import ProcessSampler, Sample
from loadtest.client.sse import SseParser, StreamResult, build_request, make_socket
from loadtest.measure.phase import say, series
from loadtest.mock.scenario import MockScenario
from loadtest.report.common import backpressure_verdict
from loadtest.report.stats import rss_trend

GATEWAY_MAX_TOKENS: Final = 1_000_000
"""The largest ``max_tokens`` the gateway accepts (``MAX_TOKENS_LIMIT`` in
gateway/dialects/openai.py; a test keeps the two equal). Asking for more is a
400, and a proof whose requests are refused proves nothing."""

FLOOD = MockScenario(ttft_ms=0, itl_ms=0, tokens=GATEWAY_MAX_TOKENS, token_bytes=512)
RCVBUF: Final = 4096
"""``SO_RCVBUF`` of a stalled client, set before connect so it bounds the window."""
FIRST_EVENT_TIMEOUT_S: Final = 10.0
ERROR_SAMPLES: Final = 5
_KEEP_BYTES: Final = 16384  # of a response, for the message of a refused request
_REQUEST_ID_RE: Final = re.compile(r"\s*\(request id [^)]*\)")
_TCP_ESTABLISHED: Final = 1  # tcpi_state, include/net/tcp_states.h
_PROGRESS_EVERY_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class ProofSpec:
    clients: int = 16
    duration_s: float = 20.0
    rss_limit_bytes: int = 1 << 30


@dataclass(slots=True)
class StalledStream:
    """One stalled client. ``sock`` is open from creation until :meth:`release`;
    ``error`` says why the request failed (None: 200 and a first content event)."""

    result: StreamResult
    prompt: str
    sock: socket.socket | None = None
    error: str | None = None

    def connected(self) -> bool:
        """The relay has neither closed nor reset the connection (``TCP_INFO`` state)."""
        if self.sock is None or self.sock.fileno() < 0:
            return False
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        except OSError:
            return False
        return info[0] == _TCP_ESTABLISHED

    def release(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass(slots=True)
class Side:
    """The stalled streams opened on one relay; ``held`` is counted once, at its
    last memory sample (None until then)."""

    name: str
    streams: list[StalledStream] = field(default_factory=list)
    held: int | None = None

    @property
    def errors(self) -> int:
        return sum(1 for s in self.streams if s.error is not None)

    def count_held(self) -> int:
        return sum(1 for s in self.streams if s.error is None and s.connected())

    def error_samples(self, n: int = ERROR_SAMPLES) -> list[str]:
        """The first ``n`` distinct errors in the order they happened, each as
        ``"<count> x <first message>"``; messages that differ only in a request
        id count as one."""
        first: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for s in self.streams:
            if s.error is not None:
                key = _REQUEST_ID_RE.sub("", s.error)
                first.setdefault(key, s.error)
                counts[key] += 1
        return [f"{counts[k]} x {first[k]}" for k in list(first)[:n]]

    def add(self, target: Target, scenario: MockScenario) -> StalledStream:
        """A new stream of this side, its socket created (not yet connected)."""
        cid = f"bp-{self.name}-{len(self.streams)}"
        prompt = f"Stall here. [lt-id:{cid}] {scenario.full_directive()}"
        res = StreamResult(cid, "stalled", target.dialect, scenario.tokens, 0.0, 0.0)
        stream = StalledStream(res, prompt, make_socket(target.host, RCVBUF))
        self.streams.append(stream)
        return stream

    def release(self) -> None:
        for s in self.streams:
            s.release()


def _refusal(status: int, raw: bytes) -> str:
    """``HTTP 400: <the error's message>`` from a non-200 response (head + body)."""
    body = raw.partition(b"\r\n\r\n")[2]
    text = body.decode(errors="replace").strip()
    with contextlib.suppress(orjson.JSONDecodeError):
        obj = orjson.loads(body)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
    return f"HTTP {status}: {text[:200]}" if text else f"HTTP {status}"


def _failure(res: StreamResult, raw: bytes, network: str | None) -> str | None:
    """Why a stalled stream is not open (a refusal, an error event, ``network``:
    a connection error or timeout), or None when it got 200 and a first event."""
    if res.status not in (0, 200):
        return _refusal(res.status, raw)
    if res.error is not None:  # set by the parser: an error event or a bad one
        return f"error event: {res.error}"
    if network is not None:
        return network
    if res.status == 0:
        return "no response"
    if res.first_token_at is None:
        return "closed before the first event"
    return None


async def open_stalled(stream: StalledStream, target: Target, timeout_s: float) -> None:
    """Open ``stream`` (created by :meth:`Side.add`): request, 200 head, first
    content event, then no more reads. Never raises for network errors; a
    failure is in ``stream.error`` and its socket is released. ``timeout_s``
    bounds connect to first event."""
    loop = asyncio.get_running_loop()
    res, sock = stream.result, stream.sock
    assert sock is not None
    request = build_request(
        target.dialect, target.host, target.port, target.model, stream.prompt, res.expected_tokens
    )
    parser = SseParser(res, target.dialect)
    raw = bytearray()
    network: str | None = None
    res.start = loop.time()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, (target.host, target.port))
            await loop.sock_sendall(sock, request)
            # A refusal is read to its end (Connection: close) for its message.
            while res.first_token_at is None and res.error is None:
                data = await loop.sock_recv(sock, RCVBUF)
                if not data:
                    break
                if len(raw) < _KEEP_BYTES:
                    raw += data
                parser.feed(data, loop.time())
    except TimeoutError:
        network = f"no first event within {timeout_s:g} s"
    except OSError as exc:
        network = f"{type(exc).__name__}: {exc}"
    stream.error = _failure(res, bytes(raw), network)
    if stream.error is not None:
        stream.release()


async def open_side(
    side: Side, target: Target, scenario: MockScenario, clients: int, timeout_s: float
) -> None:
    """``clients`` stalled streams on ``target``, opened concurrently into ``side``
    (which owns their sockets from the start: :meth:`Side.release` frees them all)."""
    streams = [side.add(target, scenario) for _ in range(clients)]
    await asyncio.gather(*(open_stalled(s, target, timeout_s) for s in streams))


def side_json(side: Side, samples: list[Sample]) -> dict[str, Any]:
    """``errors``, ``streams_held``, ``error_samples``, the RSS trend and samples."""
    return {
        "requests": len(side.streams),
        "errors": side.errors,
        "streams_held": side.held if side.held is not None else 0,
        "error_samples": side.error_samples(),
        "rss_trend": rss_trend(samples, skip_s=1.0),
        "samples": series(samples),
    }


async def _hold(
    spec: ProofSpec,
    base: Side,
    base_s: ProcessSampler,
    sl: Side,
    sl_s: ProcessSampler,
    deadline: float,
) -> str:
    """Wait for ``deadline``, printing progress; returns early (with the reason)
    once the baseline's RSS passes the bound."""
    loop = asyncio.get_running_loop()
    next_print = loop.time() + _PROGRESS_EVERY_S
    while (now := loop.time()) < deadline:
        b = base_s.latest()
        if b is not None and b.rss_bytes > spec.rss_limit_bytes:
            return f"rss passed {spec.rss_limit_bytes / 2**20:.0f} MiB at t={b.t:.1f}s"
        if now >= next_print:
            next_print += _PROGRESS_EVERY_S
            say(
                f"  [bp] left={deadline - now:4.0f}s"
                f" baseline held={base.count_held()}/{spec.clients} {base_s.status()}"
                f" | sluice held={sl.count_held()}/{spec.clients} {sl_s.status()}"
            )
        await asyncio.sleep(min(0.2, deadline - now))
    return "duration elapsed"


async def run_proof(
    spec: ProofSpec,
    baseline: Target,
    baseline_pid: int,
    sluice: Target,
    sluice_pid: int,
    sluice_metrics: str | None,
    stop_baseline: Callable[[], None],
) -> dict[str, Any]:
    """Stalled clients on both relays at once; returns, per side, ``errors``,
    ``streams_held``, ``error_samples``, RSS samples and trend, plus the verdict."""
    loop = asyncio.get_running_loop()
    base_s = ProcessSampler(baseline_pid, None, 0.25)
    sl_s = ProcessSampler(sluice_pid, sluice_metrics, 0.5)
    base_s.start()
    sl_s.start()
    deadline = loop.time() + spec.duration_s
    opening = min(FIRST_EVENT_TIMEOUT_S, spec.duration_s)
    base, sl = Side("baseline"), Side("sluice")
    try:
        await asyncio.gather(
            open_side(base, baseline, FLOOD, spec.clients, opening),
            open_side(sl, sluice, FLOOD, spec.clients, opening),
        )
        say(
            f"  [bp] opened: baseline {spec.clients - base.errors}/{spec.clients},"
            f" sluice {spec.clients - sl.errors}/{spec.clients}"
        )
        reason = await _hold(spec, base, base_s, sl, sl_s, deadline)
        base.held = base.count_held()
        base_samples = await base_s.stop()
        if reason != "duration elapsed":
            stop_baseline()  # past the bound: stop it before it takes the machine
            base.release()
            await asyncio.sleep(max(deadline - loop.time(), 0.0))
        sl.held = sl.count_held()
        sl_samples = await sl_s.stop()
    finally:
        base.release()
        sl.release()
        await base_s.stop()
        await sl_s.stop()
    result: dict[str, Any] = {
        "clients": spec.clients,
        "duration_s": spec.duration_s,
        "scenario": FLOOD.full_directive(),
        "baseline": {"stopped": reason, **side_json(base, base_samples)},
        "sluice": side_json(sl, sl_samples),
    }
    result["verdict"] = backpressure_verdict(result).as_json()
    return result
