"""The routing benchmark's figures and verdicts (loadtest/report/routing.py),
from made-up runs (no network): a verdict cannot be met when a request failed."""

from __future__ import annotations

import math

from loadtest.measure.routing import Request, Run
from loadtest.report.routing import report, share_series, summarize, verdicts


def _run(strategy: str, ttfts: list[float | None], cooldown_at: float | None = 5.0) -> Run:
    run = Run(strategy, fail_at=4.0, cooldown_at=cooldown_at)
    for i, ttft in enumerate(ttfts):
        run.requests.append(Request(start=float(i), ttft=ttft, ok=ttft is not None,
                                    error=None if ttft is not None else "http_503"))  # fmt: skip
    run.samples = [
        (0.0, {"fast": 0, "slow": 0, "flaky": 0}),
        (1.0, {"fast": 2, "slow": 1, "flaky": 1}),
        (6.0, {"fast": 4, "slow": 1, "flaky": 2}),
    ]
    return run


def test_failed_requests_count_as_infinite_ttft_and_miss_every_verdict() -> None:
    fast = _run("latency", [0.05] * 9)
    slow = _run("weighted", [0.2] * 9)
    summary = {r.strategy: summarize(r) for r in (fast, slow)}
    assert [c["met"] for c in verdicts(summary)] == [True, True]
    failing = _run("latency", [0.05] * 8 + [None])  # one failed, after the cooldown
    summary["latency"] = summarize(failing)
    assert summary["latency"]["ttft_p99_ms"] is None  # p99 is the failed one: infinite
    assert summary["latency"]["failed_after_cooldown"] == 1
    assert [c["met"] for c in verdicts(summary)] == [False, False]
    # No cooldown seen: the second verdict cannot be met either.
    summary["latency"] = summarize(_run("latency", [0.05] * 9, cooldown_at=None))
    assert [c["met"] for c in verdicts(summary)] == [True, False]
    assert verdicts(summary)[1]["verdict"] == ("missed (no cooldown seen, or no request after it)")


def test_the_report_counts_failures_in_each_verdict() -> None:
    failing = _run("latency", [0.05] * 8 + [None])
    summary = {"latency": summarize(failing), "weighted": summarize(_run("weighted", [0.2] * 9))}
    text = report(summary, verdicts(summary))
    assert "| n/a vs 200 ms; failed 1 / 0 | missed (1 requests failed; a p99 is missing" in text
    assert "| 1 of 4 failed | missed (1 requests failed) |" in text
    assert "Verdicts: **met** when" in text


def test_share_over_time_is_per_interval_and_attempts_after_cooldown_are_counted() -> None:
    run = _run("weighted", [0.1])
    times, shares = share_series(run)
    assert times == [1.0, 6.0]
    assert shares["fast"] == [0.5, 2 / 3] and math.isclose(sum(s[1] for s in shares.values()), 1)
    assert summarize(run)["flaky_attempts_after_cooldown"] == 1
