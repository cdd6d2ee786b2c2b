"""PNG plots of the hot-path benchmark (matplotlib, Agg backend): relay CPU per
1,000 events and CPU utilisation per scenario for floor and Sluice (median,
min-max whiskers), and TTFT distributions (empirical CDF over every stream of
every repetition) for direct, floor and Sluice."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from loadtest.measure.hotpath import PhaseResult
from loadtest.report import plotstyle
from loadtest.report.plotstyle import from_zero, legend_below

RELAYS = ("floor", "sluice")
COLOURS = {"direct": "tab:gray", "floor": "tab:blue", "sluice": "tab:orange"}
CPU_SCENARIOS = ("paced200", "paced500", "firehose")
TTFT_SCENARIOS = ("paced200", "paced500", "ttft_c1")


def _bars(
    ax: Axes,
    phases: list[PhaseResult],
    scenarios: list[str],
    value: Callable[[PhaseResult], float | None],
    ylabel: str,
) -> None:
    width = 0.38
    for i, relay in enumerate(RELAYS):
        meds: list[float] = []
        errs: tuple[list[float], list[float]] = ([], [])
        for sc in scenarios:
            got = (value(p) for p in phases if p.scenario == sc and p.target == relay)
            vs = [v for v in got if v is not None]
            med = statistics.median(vs) if vs else math.nan  # none: no bar
            meds.append(med)
            errs[0].append(med - min(vs) if vs else 0.0)
            errs[1].append(max(vs) - med if vs else 0.0)
        xs = [j + (i - 0.5) * width for j in range(len(scenarios))]
        ax.bar(xs, meds, width, yerr=errs, capsize=3, label=relay, color=COLOURS[relay])
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_xlabel("scenario")
    ax.set_ylabel(ylabel)
    from_zero(ax)
    legend_below(ax)


def cpu_plot(phases: list[PhaseResult], path: Path) -> bool:
    scenarios = [sc for sc in CPU_SCENARIOS if any(p.scenario == sc for p in phases)]
    if not scenarios:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    _bars(a1, phases, scenarios, lambda p: p.cpu_per_1k_events_ms, "relay CPU ms per 1,000 events")
    a1.set_title("Relay CPU per 1,000 relayed events (lower is better)")
    _bars(a2, phases, scenarios, lambda p: p.cpu_util, "cores")
    a2.set_title("Relay CPU utilisation")
    return plotstyle.save(fig, path)


def ttft_plot(phases: list[PhaseResult], path: Path) -> bool:
    scenarios = [sc for sc in TTFT_SCENARIOS if any(p.scenario == sc for p in phases)]
    if not scenarios:
        return False
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.6), squeeze=False)
    for ax, sc in zip(axes[0], scenarios, strict=True):
        for target in ("direct", *RELAYS):
            ttft = [t for p in phases if p.scenario == sc and p.target == target for t in p.ttft_s]
            if not ttft:
                continue
            xs = np.sort(np.asarray(ttft)) * 1000.0
            ys = np.arange(1, xs.size + 1) / xs.size
            ax.step(xs, ys, where="post", label=f"{target} (n={xs.size})", color=COLOURS[target])
        from_zero(ax, "x")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("TTFT, ms")
        ax.set_ylabel("share of streams")
        ax.set_title(f"TTFT distribution, {sc}")
        ax.grid(True, alpha=0.3)
        legend_below(ax)
    return plotstyle.save(fig, path)


def make_hotpath_plots(phases: list[PhaseResult], out: Path) -> list[str]:
    """Every plot the phases have data for; returns the file paths written."""
    made = []
    for name, fn in (("hotpath_cpu.png", cpu_plot), ("hotpath_ttft.png", ttft_plot)):
        if fn(phases, out / name):
            made.append(str(out / name))
    return made
