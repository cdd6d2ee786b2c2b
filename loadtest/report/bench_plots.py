"""PNG plots of ``python -m loadtest bench`` (matplotlib, Agg backend), written
next to ``bench.md``: added latency per concurrency, events per CPU-second,
RSS per open stalled stream, cancel latency percentiles."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.report import plotstyle
from loadtest.report.common import get_path
from loadtest.report.plotstyle import from_zero, legend_below

_PCTS = ("p50", "p90", "p99", "max")


def latency_plot(result: dict[str, Any], path: Path) -> bool:
    """Added TTFT and ITL (gateway minus direct, p50 and p99) per concurrency."""
    pairs = result.get("latency") or []
    if not pairs:
        return False
    cs = [p["concurrency"] for p in pairs]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in zip(
        axes, ("added_ttft_ms", "added_itl_ms"), ("added TTFT", "added ITL"), strict=True
    ):
        for q, style in (("p50", "o-"), ("p99", "s--")):
            ys = [get_path(p, "comparison", metric, q) for p in pairs]
            pts = [(c, y) for c, y in zip(cs, ys, strict=True) if y is not None]
            ax.plot([c for c, _ in pts], [y for _, y in pts], style, label=q)
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.set_xlabel("concurrent paced streams")
        ax.set_ylabel("ms (gateway minus direct)")
        ax.set_title(f"{title} per concurrency")
        from_zero(ax)  # linear ms; concurrency doubles along x, so x is log 2
        legend_below(ax)
    return plotstyle.save(fig, path)


def throughput_plot(result: dict[str, Any], path: Path) -> bool:
    """Relayed events per gateway CPU-second against the mock's own, and the target."""
    tp = result.get("throughput")
    if not tp or tp.get("gateway_events_per_cpu_s") is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    names = ["gateway (relayed)", "mock upstream (produced)"]
    vals = [tp["gateway_events_per_cpu_s"] or 0.0, tp.get("mock_events_per_cpu_s") or 0.0]
    ax.bar(names, vals, color=["tab:orange", "tab:gray"])
    ax.axhline(40_000, color="tab:red", linestyle="--", label="target >= 40,000")
    ax.set_ylabel("events per CPU-second")
    ax.set_title("Unpaced streams: events per CPU-second")
    from_zero(ax)
    legend_below(ax)
    return plotstyle.save(fig, path)


def rss_plot(result: dict[str, Any], path: Path) -> bool:
    """RSS per open stalled stream (KiB) for each number of streams held."""
    rss = [r for r in result.get("rss") or [] if r.get("rss_per_stream_kib") is not None]
    if not rss:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.bar([str(r["streams"]) for r in rss], [r["rss_per_stream_kib"] for r in rss])
    ax.set_xlabel("stalled streams held open")
    ax.set_ylabel("KiB per stream (RSS over idle)")
    ax.set_title("Gateway RSS per open stalled stream")
    from_zero(ax)
    return plotstyle.save(fig, path)


def cancel_plot(result: dict[str, Any], path: Path) -> bool:
    """Client disconnect -> upstream close percentiles, direct vs gateway."""
    cancel = result.get("cancel") or {}
    series = {k: get_path(cancel, k, "latency_ms") for k in ("direct", "gateway")}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(series)
    for i, (name, lat) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(_PCTS))]
        ax.bar(xs, [lat.get(p, math.nan) for p in _PCTS], width, label=name)  # none: no bar
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(_PCTS))], list(_PCTS))
    ax.axhline(10, color="tab:red", linestyle="--", label="target p99 <= 10 ms")
    ax.set_xlabel("percentile")
    ax.set_ylabel("ms")
    ax.set_title("Client disconnect -> upstream connection closed")
    from_zero(ax)
    legend_below(ax)
    return plotstyle.save(fig, path)


def make_bench_plots(result: dict[str, Any], out: Path) -> list[str]:
    """Every plot the result has data for; returns the file paths written."""
    made = []
    for name, fn in (
        ("bench_latency.png", latency_plot),
        ("bench_throughput.png", throughput_plot),
        ("bench_rss_per_stream.png", rss_plot),
        ("bench_cancel.png", cancel_plot),
    ):
        if fn(result, out / name):
            made.append(str(out / name))
    return made
