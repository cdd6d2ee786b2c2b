"""``bench.json`` and ``bench.md`` from a bench result, figures next to the targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.report.common import (
    Check,
    checks_table,
    floor_why,
    gaps_why,
    machine_line,
    phase_errors,
    plot_lines,
    verdict,
    write_result,
)
from loadtest.report.common import fmt as _f
from loadtest.report.common import get_path as _get


def _le(v: Any, bound: float) -> bool | None:
    return None if v is None else float(v) <= bound


def _ge(v: Any, bound: float) -> bool | None:
    return None if v is None else float(v) >= bound


def targets_rows(result: dict[str, Any]) -> list[str]:
    """The targets this suite measures, the figures and a verdict (met / missed)."""
    c1 = _get(result, "ttft_c1", "comparison", "added_ttft_ms") or {}
    p50, p99 = c1.get("p50"), c1.get("p99")
    ttft_ok = None if p50 is None or p99 is None else _le(p50, 0.5) and _le(p99, 1.0)
    eps = _get(result, "throughput", "gateway_events_per_cpu_s")
    pairs = result.get("latency", [])
    lost = {p["concurrency"]: p["gateway"]["frames_lost"] for p in pairs}
    stalls = {p["concurrency"]: p["gateway"]["normal"]["stalls"] for p in pairs}
    clean = (
        all(v == 0 for v in lost.values()) and all(v == 0 for v in stalls.values())
        if pairs
        else None
    )
    per_c = ", ".join(f"c={c}: {lost[c]} / {stalls[c]}" for c in lost) or "not measured"
    direct = [_get(p, "direct", "normal", "stalls") for p in pairs]
    direct_stalls = None if not pairs or None in direct else sum(direct)
    cancel99 = _get(result, "cancel", "gateway", "latency_ms", "p99")
    direct99 = _get(result, "cancel", "direct", "latency_ms", "p99")
    c1_failed = phase_errors(_get(result, "ttft_c1", "gateway"))
    lat_failed = sum(phase_errors(p.get("gateway")) for p in pairs)
    flood_failed = phase_errors(_get(result, "throughput", "detail", "gateway"))
    checks = [
        Check(
            "added TTFT at concurrency 1, p50 / p99",
            "<= 0.5 / 1 ms",
            f"{_f(p50, ' ms', 3)} / {_f(p99, ' ms', 3)}",
            ttft_ok,
            failed=c1_failed,
        ),
        Check(
            "relayed events per gateway CPU-second (unpaced)",
            ">= 40,000",
            _f(eps, "", 0),
            _ge(eps, 40_000),
            failed=flood_failed,
        ),
        Check(
            "frames lost / gaps > 2x pace through the gateway, every concurrency",
            "0 / 0",
            per_c,
            clean,
            gaps_why(direct_stalls, sum(stalls.values())),
            lat_failed,
        ),
        Check(
            "client disconnect -> upstream close p99",
            "<= 10 ms",
            _f(cancel99, " ms", 2),
            _le(cancel99, 10.0),
            floor_why(cancel99, direct99, 10.0, " ms", "direct (mock -> client, no relay)"),
        ),
    ]
    return checks_table(checks, "measured")


def _lat_rows(result: dict[str, Any]) -> list[str]:
    rows = [
        "| concurrency | added TTFT p50 / p99 ms | added ITL p50 / p99 ms | throughput ratio "
        "| gateway frames lost | gaps > 2x pace (direct / gateway) | worst gap / pace (gateway) "
        "| gateway events per CPU-s | added before upstream p50 / p99 ms "
        "| added first-token relay p50 / p99 ms | CPU cores: client / mock / gateway |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pairs = ([result["ttft_c1"]] if "ttft_c1" in result else []) + result.get("latency", [])
    for i, pair in enumerate(pairs):
        c = pair["comparison"]
        label = (
            f"{pair['concurrency']} (1-token streams)"
            if i == 0 and "ttft_c1" in result
            else str(pair["concurrency"])
        )
        g, d = pair["gateway"], pair["direct"]
        rows.append(
            f"| {label} | {_f(c['added_ttft_ms']['p50'], '', 3)} / "
            f"{_f(c['added_ttft_ms']['p99'], '', 3)} "
            f"| {_f(c['added_itl_ms']['p50'], '', 3)} / {_f(c['added_itl_ms']['p99'], '', 3)} "
            f"| {_f(c['throughput_ratio'], '', 3)} | {g['frames_lost']} "
            f"| {d['normal']['stalls']} / {g['normal']['stalls']} "
            f"| {_f(g['normal']['worst_gap_over_pace'], '', 2)} "
            f"| {_f(_get(g, 'process', 'events_per_cpu_s'), '', 0)} "
            f"| {_f(_get(c, 'added_to_upstream_ms', 'p50'), '', 3)} / "
            f"{_f(_get(c, 'added_to_upstream_ms', 'p99'), '', 3)} "
            f"| {_f(_get(c, 'added_first_token_relay_ms', 'p50'), '', 3)} / "
            f"{_f(_get(c, 'added_first_token_relay_ms', 'p99'), '', 3)} "
            f"| {_f(_get(g, 'client_process', 'cpu_util'), '', 2)} / "
            f"{_f(_get(g, 'mock_process', 'cpu_util'), '', 2)} / "
            f"{_f(_get(g, 'process', 'cpu_util'), '', 2)} |"
        )
    return rows


def render(result: dict[str, Any]) -> str:
    m = result["meta"]["machine"]
    out = [
        "# Sluice bench",
        "",
        f"{result['meta']['started']}; {machine_line(m)}. Mock upstream, gateway and load "
        "generator share the machine; figures are goals to compare, not assertions.",
        "",
        "## Targets",
        "",
        *targets_rows(result),
        "",
        "## Added latency (gateway minus direct, normal clients)",
        "",
        *_lat_rows(result),
        "",
    ]
    tp = result.get("throughput")
    if tp:
        out += [
            "## Throughput (unpaced streams)",
            "",
            f"- gateway: {_f(tp['gateway_events_per_cpu_s'], '', 0)} relayed events per CPU-second "
            f"(target >= 40,000: {verdict(_ge(tp['gateway_events_per_cpu_s'], 40_000))}) "
            f"at {_f(tp['gateway_events_per_s'], '', 0)} events/s, "
            f"CPU {_f(tp['gateway_cpu_util'], '', 2)} cores",
            f"- mock upstream ceiling: {_f(tp['mock_events_per_cpu_s'], '', 0)} "
            "events per CPU-second "
            f"(ran at {_f(tp['mock_events_per_s_direct'], '', 0)} events/s direct, "
            f"CPU {_f(tp['mock_cpu_util'], '', 2)} cores)",
            "",
        ]
    rss = result.get("rss")
    if rss:
        out += [
            "## RSS per open stalled stream",
            "",
            "| streams | opened (client side) | active (gateway gauge) | idle RSS MiB "
            "| RSS max MiB | per stream KiB | drift over hold KiB | max buffered bytes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rss:
            out.append(
                f"| {r['streams']} | {r.get('streams_opened')} "
                f"| {_f(r.get('streams_active_max'), '', 0)} "
                f"| {_f(r.get('idle_rss_mib'), '', 1)} | {_f(r.get('rss_mib_max'), '', 1)} "
                f"| {_f(r.get('rss_per_stream_kib'), '', 1)} "
                f"| {_f(r.get('rss_drift_kib_over_hold'), '', 0)} "
                f"| {_f(r.get('write_buffer_bytes_max'), '', 0)} |"
            )
        out.append("")
        out.append(
            "Per stream = (max RSS - idle RSS) / open streams (the gateway's "
            "sluice_streams_active when scraped, else streams opened client side)."
        )
        out.append("")
    cancel = result.get("cancel")
    if cancel:
        out += ["## Cancel latency (client disconnect -> upstream close), ms", ""]
        for name in ("direct", "gateway"):
            c = cancel.get(name) or {}
            lat = c.get("latency_ms") or {}
            out.append(
                f"- {name}: p50 {_f(lat.get('p50'))}, p99 {_f(lat.get('p99'))}, "
                f"max {_f(lat.get('max'))} "
                f"(n={_f(lat.get('n'), '', 0)}); upstream not closed {c.get('not_closed')}, "
                f"unmatched {c.get('unmatched')}"
            )
        out.append("")
    out += plot_lines(result)
    return "\n".join(out)


def write_bench(result: dict[str, Any], out: Path) -> Path:
    return write_result(result, out / "bench.json", render(result), out / "bench.md")
