"""The routing runs' figures (:func:`summarize`, :func:`share_series`),
verdicts (:func:`verdicts`: :class:`~loadtest.report.common.Check`, never met
with a failed request), plot (``routing_share.png``) and Markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loadtest.measure.routing import DEPLOYMENTS, FAST_TTFT_MS, Run
from loadtest.report.common import Check, checks_table
from loadtest.report.stats import nearest_rank

# -- figures ------------------------------------------------------------------------


def share_series(run: Run) -> tuple[list[float], dict[str, list[float]]]:
    """Per sample interval: each deployment's share of the attempts in it."""
    times: list[float] = []
    shares: dict[str, list[float]] = {name: [] for name, _ in DEPLOYMENTS}
    for (_, before), (t, after) in zip(run.samples, run.samples[1:], strict=False):
        delta = {k: after[k] - before[k] for k in after}
        total = sum(delta.values())
        if total <= 0:
            continue
        times.append(t)
        for k, v in delta.items():
            shares[k].append(v / total)
    return times, shares


def summarize(run: Run) -> dict[str, Any]:
    ttfts = [r.ttft if r.ok and r.ttft is not None else math.inf for r in run.requests]
    failed = [r for r in run.requests if not r.ok]
    after = [r for r in run.requests if run.cooldown_at is not None and r.start >= run.cooldown_at]
    first, last = (run.samples[0][1], run.samples[-1][1]) if run.samples else ({}, {})
    trials = None
    if run.cooldown_at is not None:
        at = [c for t, c in run.samples if t <= run.cooldown_at]
        trials = last.get("flaky", 0.0) - (at[-1] if at else first).get("flaky", 0.0)
    total = {k: last.get(k, 0.0) - first.get(k, 0.0) for k in last}
    return {
        "requests": len(run.requests),
        "failed": len(failed),
        "failed_by": {e: sum(1 for r in failed if r.error == e) for e in {r.error for r in failed}},
        "ttft_p50_ms": _ms(nearest_rank(ttfts, 0.5)),
        "ttft_p99_ms": _ms(nearest_rank(ttfts, 0.99)),
        "attempts_share": {
            k: round(v / max(1.0, sum(total.values())), 3) for k, v in total.items()
        },
        "fail_at_s": run.fail_at,
        "cooldown_at_s": None if run.cooldown_at is None else round(run.cooldown_at, 3),
        "requests_after_cooldown": len(after),
        "failed_after_cooldown": sum(1 for r in after if not r.ok),
        "flaky_attempts_after_cooldown": trials,
    }


def _ms(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else round(v * 1000, 2)


def verdicts(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The two targets as :class:`~loadtest.report.common.Check` (JSON form:
    ``met``, ``verdict``, ``why``, ``failed``...); never met when a request
    failed. The weighted strategy is the latency strategy's floor here: same
    mocks, same load, same machine, so a busy machine slows both."""
    out: list[Check] = []
    lat, wrr = summary.get("latency"), summary.get("weighted")
    if lat is not None and wrr is not None:
        a, b = lat["ttft_p99_ms"], wrr["ttft_p99_ms"]
        measured = f"{_or_na(a)} vs {_or_na(b)} ms; failed {lat['failed']} / {wrr['failed']}"
        ok = a is not None and b is not None and a < b
        why = "a p99 is missing (a failed request's TTFT is infinite)"
        if a is not None and b is not None:
            why = f"latency's p99 {a:g} ms {'under' if ok else 'not under'} weighted's {b:g} ms"
        out.append(Check("latency beats weighted on client TTFT p99 (latency / weighted)",
                         "lower p99, no request failed", measured, ok, why,
                         lat["failed"] + wrr["failed"]))  # fmt: skip
    if lat is not None:
        seen = lat["cooldown_at_s"] is not None
        after, failed = lat["requests_after_cooldown"], lat["failed_after_cooldown"]
        why = "" if seen and after > 0 else "no cooldown seen, or no request after it"
        out.append(Check("latency loses no request after flaky's cooldown starts",
                         "0 failed after the cooldown", f"{failed} of {after} failed",
                         seen and after > 0, why, failed))  # fmt: skip
    return [c.as_json() for c in out]


def _or_na(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtest.report import plotstyle
    from loadtest.report.plotstyle import legend_below

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        times, shares = share_series(run)
        ax.stackplot(times, *shares.values(), labels=list(shares), alpha=0.85)
        for at, label, style in ((run.fail_at, "flaky fails", "--"),
                                 (run.cooldown_at, "cooldown starts", ":")):  # fmt: skip
            if at is not None:
                ax.axvline(at, color="black", linestyle=style, linewidth=1, label=label)
        ax.set_title(f"{run.strategy}: share of attempts per deployment", fontsize="medium")
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.set_ylabel("share")
        ax.set_xlabel("seconds")
    legend_below(axes[-1, 0])
    plotstyle.save(fig, path)


def report(summary: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    lines = ["# Routing across deployments", "",
             f"fast TTFT {FAST_TTFT_MS:.0f} ms, slow {5 * FAST_TTFT_MS:.0f} ms, flaky fails "
             "(503) from half way; retries = 2; cooldown 3 failures in 10 s, 5 s", "",
             "| strategy | requests | failed | TTFT p50 ms | TTFT p99 ms | share fast/slow/flaky "
             "| failed after cooldown | flaky attempts after cooldown |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in summary.items():
        share = "/".join(f"{s['attempts_share'].get(n, 0):.2f}" for n, _ in DEPLOYMENTS)
        lines.append(
            f"| {name} | {s['requests']} | {s['failed']} | {_or_na(s['ttft_p50_ms'])} | "
            f"{_or_na(s['ttft_p99_ms'])} | {share} | {s['failed_after_cooldown']} | "
            f"{s['flaky_attempts_after_cooldown']} |"
        )
    lines += ["", *checks_table([Check.from_json(c) for c in checks])]
    return "\n".join(lines) + "\n\n![share](routing_share.png)\n"
