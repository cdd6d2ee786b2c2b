"""Numbers from a phase: percentiles (numpy), frames lost, stalls, cancel latency,
and the direct-vs-gateway deltas.

All latencies are reported in milliseconds. Frames lost counts only clients
that were meant to read the whole stream (``normal`` and ``slow`` profiles,
no fault): ``expected_tokens - tokens`` for each. A stall is an inter-token
gap larger than twice the configured pace.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np

from loadtest.client.driver import PhaseRun
from loadtest.client.sse import StreamResult

PERCENTILES: Final[tuple[float, ...]] = (50.0, 90.0, 99.0, 99.9)
READ_ALL: Final[frozenset[str]] = frozenset({"normal", "slow"})


def pct(
    values: Sequence[float] | np.ndarray[Any, Any], scale: float = 1000.0
) -> dict[str, float] | None:
    """``{"p50", "p90", "p99", "p99.9", "max", "mean", "n"}`` of ``values`` times ``scale``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return None
    qs = np.percentile(arr, PERCENTILES) * scale
    out = {f"p{p:g}": float(q) for p, q in zip(PERCENTILES, qs, strict=True)}
    out["max"] = float(arr.max() * scale)
    out["mean"] = float(arr.mean() * scale)
    out["n"] = float(arr.size)
    return out


def percentile(values: Sequence[float], q: float, scale: float = 1000.0) -> float | None:
    """The ``q``-th percentile (0-100, numpy's linear interpolation) of
    ``values`` times ``scale`` (seconds -> ms by default); ``None`` when empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q) * scale)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (``q`` in 0-1) of ``values``, an element
    of them (so ``inf`` stays ``inf``, where interpolation would give ``nan``);
    ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _kind(r: StreamResult, kinds: dict[str, str]) -> str:
    return kinds.get(r.profile, r.profile)


def latency_summary(results: Iterable[StreamResult]) -> dict[str, Any]:
    """TTFT, ITL (every gap), TPOT, E2E percentiles over ``results``, plus stalls."""
    rs = list(results)
    gaps = (
        np.concatenate([np.frombuffer(r.gaps, dtype=np.float64) for r in rs]) if rs else np.empty(0)
    )
    stalls, worst_ratio = 0, 0.0
    for r in rs:
        if r.pace_s > 0 and len(r.gaps):
            g = np.frombuffer(r.gaps, dtype=np.float64)
            stalls += int(np.count_nonzero(g > 2 * r.pace_s))
            worst_ratio = max(worst_ratio, float(g.max()) / r.pace_s)
    return {
        "ttft_ms": pct([r.ttft for r in rs if r.ttft is not None]),
        "itl_ms": pct(gaps),
        "tpot_ms": pct([r.tpot for r in rs if r.tpot is not None]),
        "e2e_ms": pct([r.e2e for r in rs if r.e2e is not None]),
        "stalls": stalls,
        "worst_gap_over_pace": worst_ratio,
    }


def summarize(run: PhaseRun, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything about one phase, JSON-ready."""
    kinds: dict[str, str] = {p.name: str(p.kind) for p in run.spec.profiles}
    duration = max(run.ended - run.started, 1e-9)
    by_profile: dict[str, list[StreamResult]] = {}
    for r in run.results:
        by_profile.setdefault(r.profile, []).append(r)
    readers = [r for r in run.results if _kind(r, kinds) in READ_ALL]
    complete_readers = [r for r in readers if r.disconnected_at is None]
    frames_expected = sum(r.expected_tokens for r in complete_readers)
    frames_received = sum(r.tokens for r in complete_readers)
    total_tokens = sum(r.tokens for r in run.results)
    profiles: dict[str, Any] = {}
    for name, rs in sorted(by_profile.items()):
        errors = Counter(r.error for r in rs if r.error and r.disconnected_at is None)
        profiles[name] = {
            "kind": kinds.get(name, name),
            "requests": len(rs),
            "completed": sum(1 for r in rs if r.done),
            "disconnected_on_purpose": sum(1 for r in rs if r.disconnected_at is not None),
            "errors": dict(errors),
            "tokens": sum(r.tokens for r in rs),
            "latency": latency_summary(rs) if kinds.get(name) in READ_ALL else None,
        }
    normal = [r for r in run.results if _kind(r, kinds) == "normal"]
    out: dict[str, Any] = {
        "target": run.target.name,
        "dialect": run.target.dialect,
        "mode": run.spec.mode,
        "concurrency": run.spec.concurrency,
        "rate": run.spec.rate if run.spec.mode == "open" else None,
        "duration_s": duration,
        "requests": len(run.results),
        "shed": run.shed,
        "events": total_tokens,
        "events_per_s": total_tokens / duration,
        "requests_per_s": len(run.results) / duration,
        "frames_expected": frames_expected,
        "frames_received": frames_received,
        "frames_lost": frames_expected - frames_received,
        "normal": latency_summary(normal),
        "profiles": profiles,
    }
    if records is not None:
        out["cancel"] = cancel_latency(run.results, records)
        out["upstream"] = upstream_summary(records)
        out["ttft_split"] = ttft_split(normal, records)
    return out


def cancel_latency(
    results: Iterable[StreamResult], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Client disconnect -> upstream saw its connection close, matched by client id.

    ``not_closed`` counts disconnected clients whose upstream stream ran on
    (the mock never saw a close); ``unmatched`` those with no mock record
    (e.g. the gateway never called upstream).
    """
    by_client: dict[str, dict[str, Any]] = {}
    for rec in records:
        cid = rec.get("client_id")
        if cid and (cid not in by_client or rec.get("peer_closed_mono") is not None):
            by_client[cid] = rec
    lat: list[float] = []
    not_closed = unmatched = finished_first = 0
    for r in results:
        if r.disconnected_at is None:
            continue
        match = by_client.get(r.client_id)
        if match is None:
            unmatched += 1
        elif match.get("peer_closed_mono") is None:
            ended = match.get("ended_mono")
            if match.get("completed") and ended is not None and ended <= r.disconnected_at:
                finished_first += 1  # upstream was done before the client left
            else:
                not_closed += 1
        else:
            lat.append(float(match["peer_closed_mono"]) - r.disconnected_at)
    return {
        "latency_ms": pct(lat),
        "not_closed": not_closed,
        "unmatched": unmatched,
        "upstream_finished_first": finished_first,
    }


def ttft_split(results: Iterable[StreamResult], records: list[dict[str, Any]]) -> dict[str, Any]:
    """TTFT in two parts, matched by client id: request start -> the upstream
    handler starts (connect + request forwarding), and the upstream writes its
    first token -> the client reads it (first-token relay)."""
    by_client = {r["client_id"]: r for r in records if r.get("client_id")}
    to_upstream: list[float] = []
    relay: list[float] = []
    for r in results:
        rec = by_client.get(r.client_id)
        if rec is None or r.first_token_at is None or rec.get("first_token_mono") is None:
            continue
        to_upstream.append(float(rec["started_mono"]) - r.start)
        relay.append(r.first_token_at - float(rec["first_token_mono"]))
    return {"to_upstream_ms": pct(to_upstream), "first_token_relay_ms": pct(relay)}


def upstream_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the mock saw: outcomes, bytes written and drained, drain waits."""
    return {
        "requests": len(records),
        "outcomes": dict(Counter(str(r.get("outcome")) for r in records)),
        "bytes_written": sum(int(r.get("bytes_written", 0)) for r in records),
        "bytes_drained": sum(int(r.get("bytes_drained", 0)) for r in records),
        "drain_waits": sum(int(r.get("drain_waits", 0)) for r in records),
    }


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    """Gateway minus direct for normal clients: added TTFT / ITL, throughput ratio."""

    def delta(metric: str, p: str) -> float | None:
        a, b = direct["normal"].get(metric), gateway["normal"].get(metric)
        return None if a is None or b is None else float(b[p] - a[p])

    ratio = gateway["events_per_s"] / direct["events_per_s"] if direct["events_per_s"] else None
    return {
        "added_ttft_ms": {"p50": delta("ttft_ms", "p50"), "p99": delta("ttft_ms", "p99")},
        "added_itl_ms": {"p50": delta("itl_ms", "p50"), "p99": delta("itl_ms", "p99")},
        "added_e2e_ms": {"p50": delta("e2e_ms", "p50"), "p99": delta("e2e_ms", "p99")},
        "added_to_upstream_ms": _split_delta(direct, gateway, "to_upstream_ms"),
        "added_first_token_relay_ms": _split_delta(direct, gateway, "first_token_relay_ms"),
        "throughput_ratio": ratio,
    }


def _split_delta(direct: dict[str, Any], gateway: dict[str, Any], key: str) -> dict[str, Any]:
    a = (direct.get("ttft_split") or {}).get(key)
    b = (gateway.get("ttft_split") or {}).get(key)
    if not a or not b:
        return {"p50": None, "p99": None}
    return {"p50": b["p50"] - a["p50"], "p99": b["p99"] - a["p99"]}


def rss_trend(samples: Sequence[Any], skip_s: float = 5.0) -> dict[str, float] | None:
    """Linear fit of RSS over time after a warm-up: slope (KiB/s), first, last, max (MiB).

    The warm-up is ``skip_s`` or a quarter of the sampled time, whichever is
    shorter, so a short (``--quick``) phase still gets a figure; None under 3
    samples after it."""
    if not samples:
        return None
    span = samples[-1].t - samples[0].t
    skip = min(skip_s, samples[0].t + span / 4)
    pts = [(s.t, s.rss_bytes) for s in samples if s.t >= skip]
    if len(pts) < 3:
        return None
    t = np.array([p[0] for p in pts])
    rss = np.array([p[1] for p in pts], dtype=np.float64)
    slope = float(np.polyfit(t, rss, 1)[0])
    return {
        "slope_kib_per_s": slope / 1024,
        "first_mib": float(rss[0] / 2**20),
        "last_mib": float(rss[-1] / 2**20),
        "max_mib": float(rss.max() / 2**20),
        "window_s": float(t[-1] - t[0]),
    }
