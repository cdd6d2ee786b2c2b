"""Every load-test plot reads at a glance: built from small made-up results
(no processes), each axes is linear with zero in view and the data inside
(nothing truncated: 214 ms against 227 ms is not drawn as a gap), names its
one unit, and its legend sits outside the data area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from loadtest.measure.hotpath import PhaseResult
from loadtest.measure.routing import Run
from loadtest.report import bench_plots, e2e_plots, hotpath_plots, plotstyle
from loadtest.report.routing import plot as routing_plot

PCTS = {"p50": 214.0, "p90": 220.0, "p99": 227.0, "p99.9": 230.0, "max": 231.0, "n": 9.0}


def _phase(shift: float) -> dict[str, Any]:
    stats = {k: (v + shift if k != "n" else v) for k, v in PCTS.items()}
    return {"normal": {"ttft_ms": stats, "itl_ms": stats, "e2e_ms": stats}}


def _samples(rss_mib: float, grow: float) -> list[dict[str, Any]]:
    return [{"t": t / 2, "rss_bytes": (rss_mib + grow * t) * 2**20, "write_buffer_bytes": 4096.0,
             "streams_active": 16} for t in range(6)]  # fmt: skip


E2E: dict[str, Any] = {
    "phases": {"direct": _phase(0.0), "gateway": _phase(13.0),
               "slow": {**_phase(20.0), "samples": _samples(59.9, 0.06)}},  # flat: near the top
    "backpressure": {"clients": 2,
                     "baseline": {"samples": _samples(40.0, 15.0), "streams_held": 2, "errors": 0},
                     "sluice": {"samples": _samples(60.0, 0.0), "streams_held": 2, "errors": 0}},
}  # fmt: skip
BENCH: dict[str, Any] = {
    "latency": [{"concurrency": c, "comparison": {"added_ttft_ms": {"p50": 0.3 * c, "p99": c},
                                                  "added_itl_ms": {"p50": -0.1, "p99": 0.4}}}
                for c in (1, 32, 128)],
    "throughput": {"gateway_events_per_cpu_s": 52_000.0, "mock_events_per_cpu_s": 70_000.0},
    "rss": [{"streams": n, "rss_per_stream_kib": 36.0 + n / 1000} for n in (1000, 5000)],
    "cancel": {"direct": {"latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0}},
               "gateway": {"latency_ms": {"p50": 1.2, "p99": 3.5}}},  # no p90 / max: no bar
}  # fmt: skip


def _hot(sc: str, target: str, cpu: float) -> PhaseResult:
    return PhaseResult(sc, target, 0, 200, 5.0, 200, 10_000, 0, cpu, 1.0, 1.0, None, None, None,
                       (0.214, 0.220, 0.227), None, 0, 0)  # fmt: skip


HOT = [_hot(sc, t, cpu) for sc in ("paced200", "ttft_c1") for t, cpu in
       (("direct", None), ("floor", 1.6), ("sluice", 2.3))]  # fmt: skip


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    made: list[Figure] = []
    monkeypatch.setattr(plotstyle, "save", lambda fig, _path: made.append(fig) or True)
    return made


def _check(fig: Figure) -> None:
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        assert ax.get_yscale() == "linear" and ax.get_ylabel(), ax.get_title()
        assert lo <= 0 <= hi, f"{ax.get_title()}: zero out of view {lo, hi}"
        if not ax.get_ylabel().startswith("share"):  # a share of 1 may touch the frame
            assert ax.dataLim.y1 <= 0.95 * hi, f"{ax.get_title()}: a line on the frame"
        if ax.patches:  # bars start at zero
            assert lo == 0, ax.get_title()
        legend = ax.get_legend()
        if legend is not None:  # below the axes and its x label, not over the data
            top = legend.get_window_extent().y1
            assert top <= ax.get_window_extent().y0, ax.get_title()
            if ax.get_xlabel():
                assert top <= ax.xaxis.label.get_window_extent().y0, ax.get_title()


def test_every_plot_reads_at_a_glance(figures: list[Figure], tmp_path: Path) -> None:
    assert len(e2e_plots.make_plots(E2E, tmp_path)) == 3
    assert len(bench_plots.make_bench_plots(BENCH, tmp_path)) == 4
    assert len(hotpath_plots.make_hotpath_plots(HOT, tmp_path)) == 2
    run = Run("latency", fail_at=1.0, cooldown_at=2.0)
    run.samples = [
        (0.0, {"fast": 0, "slow": 0, "flaky": 0}),
        (1.0, {"fast": 2, "slow": 1, "flaky": 1}),
    ]
    routing_plot([run], tmp_path / "routing.png")
    assert len(figures) == 10
    for fig in figures:
        _check(fig)
    ttft = next(f for f in figures if "TTFT distribution" in f.axes[0].get_title())
    assert ttft.axes[0].get_xlim()[0] == 0 and ttft.axes[0].get_xscale() == "linear"
    # The e2e bars of 214 ms and 227 ms stand on zero: a 6% difference looks like 6%.
    e2e = figures[0].axes[0]
    assert e2e.get_ylim()[0] == 0 and e2e.get_ylim()[1] < 300
