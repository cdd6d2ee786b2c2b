"""One measured phase of the hot-path benchmark: load on one target while the
CPU time of the relay, the mock upstream and this load generator is read
around it, and the mock's records are joined to the clients' disconnects.

CPU is psutil ``cpu_times()`` user + system of each process (not its
children), read right before the first request and right after the last
stream ends; ``events`` are the content events the clients received (the
relayed tokens; role, usage and ``[DONE]`` events are relayed too but not
counted, the same for every target).

A closed-loop phase ramps up, holds its concurrency, then drains as the last
streams finish. Utilisation and events/s are therefore also taken over a
steady window (from the end of the ramp to the time new streams stop
starting): CPU read at both ends, events counted from each token's arrival
time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil  # type: ignore[import-untyped]

from loadtest import procs
from loadtest.client.driver import LoadSpec, PhaseRun, run_phase
from loadtest.client.profiles import Target
from loadtest.client.sampler import cpu_seconds, fetch_records, reset_records, run_queue_wait_s
from loadtest.client.sse import StreamResult
from loadtest.report.stats import cancel_latency, percentile


@dataclass(frozen=True, slots=True)
class Load:
    """One stream of load in a phase: ``spec`` starts ``delay_s`` after the phase
    does (its ``duration_s`` counts from then); ``label`` prefixes client ids."""

    label: str
    spec: LoadSpec
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One target through one scenario, one repetition.

    ``concurrency`` is the main load's streams. Times are seconds, CPU is
    CPU-seconds over the phase. ``relay_cpu_s`` is ``None`` for ``direct`` (no
    relay). ``steady_*`` cover the steady window (``steady_s`` long; ``None``
    when the phase has none, e.g. a single stream). ``ttft_s`` holds the TTFT of every
    stream of the main load (not the disconnecting clients); ``cancel_ms`` is
    :func:`loadtest.report.stats.cancel_latency`'s percentiles (ms) of client
    disconnect -> the mock saw the connection close, or ``None`` when there
    were none.
    """

    scenario: str
    target: str
    rep: int
    concurrency: int
    wall_s: float
    requests: int
    events: int
    errors: int
    relay_cpu_s: float | None
    mock_cpu_s: float
    client_cpu_s: float
    steady_s: float | None
    steady_events: int | None
    steady_relay_cpu_s: float | None
    ttft_s: tuple[float, ...]
    cancel_ms: dict[str, float] | None
    cancel_not_closed: int
    cancel_unmatched: int
    relay_runq_s: float | None = None
    """Seconds the relay was runnable but waited for a core (None: direct, or
    not known), :func:`~loadtest.client.sampler.run_queue_wait_s`."""
    own_ttft_ms: tuple[float, ...] = ()
    """Sluice only, from its summary log lines of this phase: each stream's TTFT
    minus its upstream TTFT (ms), the gateway's own part of the first token
    (request in -> upstream request sent, first chunk in -> written)."""
    upstream_ttft_ms: tuple[float, ...] = ()
    """Sluice only: each stream's upstream TTFT as the gateway saw it (ms:
    upstream request sent -> first content chunk received)."""
    upstream_headers_ms: tuple[float, ...] = ()
    """Sluice only: upstream request sent -> its response headers (ms)."""
    slowest_legs_ms: tuple[float, float, float] | None = None
    """The slowest 1% of the main load's streams by TTFT (at least one), their
    mean time (ms) to the mock (client sent -> mock handler started), in the
    mock (-> mock wrote the first token) and back (-> client read it):
    :func:`slowest_legs`. None when no stream matched a mock record."""

    @property
    def events_per_s(self) -> float:
        """Steady-window events/s when there is one, else over the whole phase."""
        if self.steady_s and self.steady_events is not None:
            return self.steady_events / self.steady_s
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_per_1k_events_ms(self) -> float | None:
        """Relay CPU milliseconds per 1,000 relayed events."""
        if self.relay_cpu_s is None or self.events == 0:
            return None
        return self.relay_cpu_s / self.events * 1e6

    @property
    def events_per_cpu_s(self) -> float | None:
        if not self.relay_cpu_s:
            return None
        return self.events / self.relay_cpu_s

    @property
    def cpu_util(self) -> float | None:
        """Relay CPU utilisation, cores (1.0 = one core busy all phase)."""
        if self.steady_s and self.steady_relay_cpu_s is not None:
            return self.steady_relay_cpu_s / self.steady_s
        if self.relay_cpu_s is None or self.wall_s <= 0:
            return None
        return self.relay_cpu_s / self.wall_s

    def ttft_ms(self, q: float) -> float | None:
        """The ``q``-th percentile of TTFT, ms (numpy's linear interpolation)."""
        return percentile(self.ttft_s, q)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the raw fields (TTFTs in ms) and the derived figures."""
        return {
            "scenario": self.scenario,
            "target": self.target,
            "rep": self.rep,
            "concurrency": self.concurrency,
            "wall_s": self.wall_s,
            "steady_s": self.steady_s,
            "steady_events": self.steady_events,
            "steady_relay_cpu_s": self.steady_relay_cpu_s,
            "requests": self.requests,
            "events": self.events,
            "errors": self.errors,
            "events_per_s": self.events_per_s,
            "relay_cpu_s": self.relay_cpu_s,
            "relay_runq_s": self.relay_runq_s,
            "slowest_legs_ms": self.slowest_legs_ms,
            "own_ttft_p99_ms": percentile(self.own_ttft_ms, 99, 1.0) if self.own_ttft_ms else None,
            "upstream_ttft_p99_ms": (
                percentile(self.upstream_ttft_ms, 99, 1.0) if self.upstream_ttft_ms else None
            ),
            "cpu_per_1k_events_ms": self.cpu_per_1k_events_ms,
            "events_per_cpu_s": self.events_per_cpu_s,
            "cpu_util": self.cpu_util,
            "mock_cpu_util": self.mock_cpu_s / self.wall_s if self.wall_s else None,
            "client_cpu_util": self.client_cpu_s / self.wall_s if self.wall_s else None,
            "ttft_p50_ms": self.ttft_ms(50),
            "ttft_p99_ms": self.ttft_ms(99),
            "cancel_ms": self.cancel_ms,
            "cancel_not_closed": self.cancel_not_closed,
            "cancel_unmatched": self.cancel_unmatched,
            "ttft_ms": [t * 1000.0 for t in self.ttft_s],
        }


async def _delayed(target: Target, load: Load) -> PhaseRun:
    if load.delay_s > 0:
        await asyncio.sleep(load.delay_s)
    return await run_phase(target, load.spec, load.label)


def _cpu(p: psutil.Process | None) -> float:
    return cpu_seconds(p) if p is not None else 0.0


async def _cpu_at(p: psutil.Process | None, at: float) -> float:
    """``p``'s CPU seconds at loop time ``at``."""
    await asyncio.sleep(max(at - asyncio.get_running_loop().time(), 0.0))
    return _cpu(p)


def events_between(results: Iterable[StreamResult], lo: float, hi: float) -> int:
    """Content events that arrived in ``[lo, hi)`` (loop time), over ``results``."""
    n = 0
    for r in results:
        if r.first_token_at is None:
            continue
        times = r.first_token_at + np.concatenate(([0.0], np.cumsum(r.gaps)))
        n += int(np.count_nonzero((times >= lo) & (times < hi)))
    return n


def gateway_ttft_parts(
    log: Path, start: int
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """From the gateway's summary lines in ``log`` after byte ``start``: each
    stream's own part of its TTFT (``ttft_ms - upstream_ttft_ms``), its
    upstream TTFT and its upstream headers time (``upstream_headers_ms``),
    in ms (lines without the first two are skipped; the third where given)."""
    own: list[float] = []
    upstream: list[float] = []
    headers: list[float] = []
    with log.open("rb") as f:
        f.seek(start)
        for line in f:
            if b'"upstream_ttft_ms"' not in line:
                continue
            try:
                fields = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            ttft, up = fields.get("ttft_ms"), fields.get("upstream_ttft_ms")
            if isinstance(ttft, float | int) and isinstance(up, float | int):
                own.append(ttft - up)
                upstream.append(up)
                hdr = fields.get("upstream_headers_ms")
                if isinstance(hdr, float | int):
                    headers.append(hdr)
    return tuple(own), tuple(upstream), tuple(headers)


def slowest_legs(
    results: Iterable[StreamResult], records: list[dict[str, Any]], share: float = 0.01
) -> tuple[float, float, float] | None:
    """Where the slowest first tokens spent their time: for the ``share`` of
    streams with the longest TTFT (at least one), the mean ms from the client
    to the mock's handler, inside the mock, and from the mock's first token
    to the client, matched by client id (monotonic clocks, one host)."""
    by_client = {r["client_id"]: r for r in records if r.get("client_id")}
    legs: list[tuple[float, float, float, float]] = []
    for r in results:
        rec = by_client.get(r.client_id)
        if r.first_token_at is None or rec is None or rec.get("first_token_mono") is None:
            continue
        started, first = float(rec["started_mono"]), float(rec["first_token_mono"])
        legs.append((r.first_token_at - r.start, started - r.start, first - started,
                     r.first_token_at - first))  # fmt: skip
    if not legs:
        return None
    legs.sort(reverse=True)
    top = legs[: max(1, round(len(legs) * share))]
    return (
        sum(t[1] for t in top) / len(top) * 1e3,
        sum(t[2] for t in top) / len(top) * 1e3,
        sum(t[3] for t in top) / len(top) * 1e3,
    )


def _log_of(relay: procs.Managed | None) -> Path | None:
    """The gateway's log (its summary lines); None for other relays."""
    return Path(relay.log.name) if relay is not None and relay.name == "gateway" else None


async def measure(
    scenario: str,
    rep: int,
    target: Target,
    loads: Sequence[Load],
    mock: procs.Managed,
    relay: procs.Managed | None,
    steady: tuple[float, float] | None = None,
) -> PhaseResult:
    """Run ``loads`` (the first is the main load) at once against ``target``;
    ``steady`` is the steady window, seconds from the start of the phase."""
    await reset_records(mock.url)
    watched = [psutil.Process(relay.pid) if relay else None, psutil.Process(mock.pid)]
    watched.append(psutil.Process())
    loop = asyncio.get_running_loop()
    before = [_cpu(p) for p in watched]
    runq_before = run_queue_wait_s(relay.pid) if relay else None
    gateway_log = _log_of(relay)
    log_start = gateway_log.stat().st_size if gateway_log is not None else 0
    t0 = loop.time()
    window = (t0 + steady[0], t0 + steady[1]) if steady and steady[1] > steady[0] else None
    marks = [asyncio.ensure_future(_cpu_at(watched[0], t)) for t in window or ()]
    runs = await asyncio.gather(*(_delayed(target, load) for load in loads))
    wall = loop.time() - t0
    cpu_marks = [await m for m in marks]
    relay_cpu, mock_cpu, client_cpu = (_cpu(p) - b for p, b in zip(watched, before, strict=True))
    runq_after = run_queue_wait_s(relay.pid) if relay else None
    relay_runq = (
        runq_after - runq_before if runq_after is not None and runq_before is not None else None
    )
    results = [r for run in runs for r in run.results]
    disconnected = [r for r in results if r.disconnected_at is not None]
    cancel: dict[str, Any] = {"latency_ms": None, "not_closed": 0, "unmatched": 0}
    records = await fetch_records(mock.url)
    if disconnected:
        cancel = cancel_latency(disconnected, records)
    main = runs[0].results
    own: tuple[float, ...] = ()
    upstream: tuple[float, ...] = ()
    headers: tuple[float, ...] = ()
    if gateway_log is not None:
        own, upstream, headers = gateway_ttft_parts(gateway_log, log_start)
    has_steady = window is not None and relay is not None
    return PhaseResult(
        scenario=scenario,
        target=target.name,
        rep=rep,
        concurrency=loads[0].spec.concurrency,
        wall_s=wall,
        requests=len(results),
        events=sum(r.tokens for r in results),
        errors=sum(1 for r in results if r.error and r.disconnected_at is None),
        relay_cpu_s=relay_cpu if relay is not None else None,
        relay_runq_s=relay_runq,
        own_ttft_ms=own,
        upstream_ttft_ms=upstream,
        upstream_headers_ms=headers,
        slowest_legs_ms=slowest_legs(main, records),
        mock_cpu_s=mock_cpu,
        client_cpu_s=client_cpu,
        steady_s=window[1] - window[0] if window else None,
        steady_events=events_between(results, *window) if window else None,
        steady_relay_cpu_s=cpu_marks[1] - cpu_marks[0] if has_steady else None,
        ttft_s=tuple(r.ttft for r in main if r.ttft is not None),
        cancel_ms=cancel["latency_ms"],
        cancel_not_closed=int(cancel["not_closed"]),
        cancel_unmatched=int(cancel["unmatched"]),
    )
