"""PNG plots (matplotlib, Agg backend): latency percentiles per phase, gateway
RSS and buffered bytes over the slow-client phase, baseline vs Sluice RSS."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.report import plotstyle
from loadtest.report.plotstyle import from_zero, legend_below

_PCTS = ("p50", "p90", "p99", "p99.9")


def latency_plot(result: dict[str, Any], path: Path) -> bool:
    phases = {k: v for k, v in result.get("phases", {}).items() if v["normal"]["ttft_ms"]}
    if not phases:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, metric, title in zip(
        axes, ("ttft_ms", "itl_ms", "e2e_ms"), ("TTFT", "ITL (every gap)", "E2E"), strict=True
    ):
        width = 0.8 / len(phases)
        for i, (name, ph) in enumerate(phases.items()):
            stats = ph["normal"][metric] or {}
            xs = [j + i * width for j in range(len(_PCTS))]
            ax.bar(xs, [stats.get(p, math.nan) for p in _PCTS], width, label=name)  # none: no bar
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(_PCTS))], list(_PCTS))
        ax.set_title(f"{title}, normal clients")
        ax.set_xlabel("percentile")
        ax.set_ylabel("ms")
        from_zero(ax)
        legend_below(ax)
    return plotstyle.save(fig, path)


def slow_phase_plot(result: dict[str, Any], path: Path) -> bool:
    slow = result.get("phases", {}).get("slow")
    if not slow or not slow.get("samples"):
        return False
    s = slow["samples"]
    t = [x["t"] for x in s]
    # One unit per axis: RSS, bytes buffered and streams each get their own panel.
    fig, (ax, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    ax.plot(t, [x["rss_bytes"] / 2**20 for x in s], color="tab:blue")
    ax.set_ylabel("gateway RSS, MiB")
    from_zero(ax)
    buf = [(x["t"], x["write_buffer_bytes"]) for x in s if x["write_buffer_bytes"] is not None]
    if buf:
        ax2.plot(
            [b[0] for b in buf],
            [b[1] / 1024 for b in buf],
            color="tab:orange",
        )
    ax2.set_ylabel("write buffers, KiB")
    from_zero(ax2)
    act = [(x["t"], x["streams_active"]) for x in s if x["streams_active"] is not None]
    if act:
        ax3.plot([a[0] for a in act], [a[1] for a in act], color="tab:green")
    ax3.set_ylabel("streams active")
    from_zero(ax3)
    ax3.set_xlabel("seconds")
    ax.set_title(
        "Gateway with slow, stalled and disconnecting clients "
        "(sluice_write_buffer_bytes, sluice_streams_active)"
    )
    return plotstyle.save(fig, path)


def backpressure_plot(result: dict[str, Any], path: Path) -> bool:
    bp = result.get("backpressure")
    if not bp:
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, label in (("baseline", "baseline relay (write, no drain)"), ("sluice", "Sluice")):
        side = bp[name]
        s = side["samples"]
        label += f": {side.get('streams_held')} of {bp['clients']} stalled streams held"
        label += f", {side.get('errors')} failed requests"
        ax.plot([x["t"] for x in s], [x["rss_bytes"] / 2**20 for x in s], label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MiB")
    from_zero(ax)
    ax.set_title(f"RSS with {bp['clients']} stalled clients each")
    legend_below(ax)
    return plotstyle.save(fig, path)


def make_plots(result: dict[str, Any], out: Path) -> list[str]:
    """Every plot the result has data for; returns the file paths written."""
    made = []
    for name, fn in (
        ("latency_percentiles.png", latency_plot),
        ("slow_clients_rss_buffer.png", slow_phase_plot),
        ("backpressure_rss.png", backpressure_plot),
    ):
        if fn(result, out / name):
            made.append(str(out / name))
    return made
