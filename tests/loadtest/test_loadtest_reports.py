"""Verdicts in the reports: each target row says met or missed, from the figure."""

from __future__ import annotations

from array import array
from typing import Any

from loadtest.client.sse import StreamResult
from loadtest.measure.hotpath import PhaseResult, events_between
from loadtest.report.bench import targets_rows
from loadtest.report.common import Check, checks_table, targets_table
from loadtest.report.hotpath import GOALS, Stat, build_rows


def _row(lines: list[str], start: str) -> list[str]:
    line = next(x for x in lines if x.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_loadtest_targets_have_verdicts() -> None:
    result: dict[str, Any] = {
        "comparison": {"added_ttft_ms": {"p50": 0.4, "p99": 3.0}},
        "phases": {
            "gateway": {
                "concurrency": 128,
                "process": {"events_per_cpu_s": 52_000.0},
                "frames_lost": 0,
                "normal": {"stalls": 0},
            },
            "slow": {
                "rss_trend": {"slope_kib_per_s": 12.0, "window_s": 55.0},
                "cancel": {"latency_ms": {"p99": 25.0}},
            },
        },
    }
    lines = targets_table(result)
    assert lines[0] == "| target | goal | measured here | verdict |"
    assert _row(lines, "| added TTFT")[-1] == "missed"  # p99 3 ms > 1 ms
    assert _row(lines, "| relayed events")[-1] == "met"
    assert _row(lines, "| frames lost")[-1] == "met"
    assert _row(lines, "| RSS slope")[-1] == "met"
    assert _row(lines, "| Sluice vs baseline")[-1] == "n/a"  # no backpressure proof run
    assert _row(lines, "| client disconnect")[-1] == "missed"


def test_bench_targets_have_verdicts() -> None:
    def pair(c: int, lost: int) -> dict[str, Any]:
        return {"concurrency": c, "gateway": {"frames_lost": lost, "normal": {"stalls": 0}}}

    result: dict[str, Any] = {
        "ttft_c1": {"comparison": {"added_ttft_ms": {"p50": 0.3, "p99": 0.9}}},
        "latency": [pair(1, 0), pair(512, 3)],
        "throughput": {"gateway_events_per_cpu_s": 39_000.0},
        "cancel": {"gateway": {"latency_ms": {"p99": 4.0}}},
    }
    lines = targets_rows(result)
    assert _row(lines, "| added TTFT")[-1] == "met"
    assert _row(lines, "| relayed events")[-1] == "missed"
    assert _row(lines, "| frames lost")[-1] == "missed"
    assert "c=512: 3 / 0" in _row(lines, "| frames lost")[2]
    assert _row(lines, "| client disconnect")[-1] == "met"


def _phase(target: str, cpu_s: float | None, ttft_ms: float, rep: int = 0) -> PhaseResult:
    return PhaseResult(
        scenario="paced200",
        target=target,
        rep=rep,
        concurrency=200,
        wall_s=10.0,
        requests=1000,
        events=100_000,
        errors=0,
        relay_cpu_s=cpu_s,
        mock_cpu_s=3.0,
        client_cpu_s=3.0,
        steady_s=None,
        steady_events=None,
        steady_relay_cpu_s=None,
        ttft_s=(ttft_ms / 1000.0,) * 10,
        cancel_ms={"p50": 1.0, "p99": 2.0} if cpu_s is not None else None,
        cancel_not_closed=0,
        cancel_unmatched=0,
    )


def test_hotpath_rows_ratio_and_verdicts() -> None:
    phases = []
    for rep, (floor_cpu, sluice_cpu) in enumerate(((4.0, 5.0), (4.0, 6.0), (4.0, 5.5))):
        phases += [
            _phase("direct", None, 20.0, rep),
            _phase("floor", floor_cpu, 21.0, rep),
            _phase("sluice", sluice_cpu, 27.0, rep),
        ]
    rows = {r.key: r for r in build_rows(phases)}
    cpu = rows["cpu_per_1k"]
    assert cpu.sluice is not None and cpu.floor is not None
    assert (cpu.sluice.median, cpu.sluice.lo, cpu.sluice.hi) == (55.0, 50.0, 60.0)  # ms / 1k
    assert cpu.ratio == 55.0 / 40.0
    assert cpu.verdict == "missed"  # 1.375x > 1.0x
    assert cpu.why == "1.38x the floor's, outside <= 1x floor"
    # The hotpath report's verdicts are the type every report's target table uses.
    assert isinstance(cpu.check, Check)
    assert checks_table([cpu.check])[2] == (
        "| paced200: relay CPU per 1,000 events | <= 1x floor | 55.0 ms "
        "| missed (1.38x the floor's, outside <= 1x floor) |"
    )
    assert cpu.as_dict()["verdict"] == "missed" and "check" not in cpu.as_dict()
    ttft = rows["added_ttft_p99"]
    assert ttft.sluice is not None and abs(ttft.sluice.median - 7.0) < 1e-9
    assert ttft.verdict == "missed"  # 7 ms > 2x the floor's 1 ms
    assert rows["cancel_p99"].verdict == "met"  # the floor's, 1.0x
    assert rows["cpu_util"].why == ""
    assert rows["cpu_util"].verdict == "report"


def test_events_between_counts_token_arrivals_in_the_window() -> None:
    r = StreamResult("c", "normal", "openai", 4, 0.1, start=0.0)
    r.first_token_at, r.gaps, r.tokens = 1.0, array("d", [0.1, 0.1, 0.1]), 4  # 1.0 ... 1.3
    assert events_between([r], 1.05, 1.25) == 2
    assert events_between([r], 0.0, 10.0) == 4


def test_hotpath_why_says_whose_miss_an_absolute_one_is() -> None:
    goal = GOALS[("ttft_c1", "added_ttft_p50")]  # <= 0.5 ms
    sluice, floor_ok, floor_missed = (
        Stat(0.8, 0.7, 0.9, 3),
        Stat(0.3, 0.3, 0.3, 3),
        Stat(0.6, 0.6, 0.6, 3),
    )
    assert goal.why(sluice, floor_missed, None).endswith(
        "the floor missed too (0.6 ms): the machine's"
    )
    assert goal.why(sluice, floor_ok, None).endswith("the floor met it (0.3 ms): Sluice's miss")
    assert goal.why(Stat(0.4, 0.4, 0.4, 1), floor_missed, None) == "0.4 ms within <= 0.5 ms"
    assert goal.why(None, floor_ok, None).startswith("Sluice's figure is missing")


def test_hotpath_added_latency_at_or_below_zero_meets_a_relative_bound() -> None:
    goal = GOALS[("paced200", "added_ttft_p99")]  # <= 2x floor
    met, why = goal.judge(Stat(-1.5, -1.5, -1.5, 1), Stat(79.0, 79.0, 79.0, 1), None)
    assert met is True and "nothing measurable added" in why
    met, why = goal.judge(Stat(3.0, 3.0, 3.0, 1), Stat(-0.2, -0.2, -0.2, 1), None)
    assert met is False and "raised to 1 ms" in why and "noise" in why  # 3 ms > 2x 1 ms
    met, _why = goal.judge(Stat(1.5, 1.5, 1.5, 1), Stat(0.1, 0.1, 0.1, 1), 15.0)
    assert met is True  # 1.5 ms <= 2x the 1 ms noise floor, though 15x the floor's 0.1 ms


def test_a_gap_the_direct_path_shows_too_is_called_the_machines() -> None:
    def result(direct_stalls: int) -> dict[str, Any]:
        phase = {"frames_lost": 0, "normal": {"stalls": 3}}
        return {"phases": {"gateway": phase, "direct": {"normal": {"stalls": direct_stalls}}}}

    machine = _row(targets_table(result(2)), "| frames lost")[-1]
    assert machine == "missed (direct had 2 such gaps too: the machine's share)"
    assert (
        _row(targets_table(result(0)), "| frames lost")[-1] == "missed (direct had none: Sluice's)"
    )


def test_a_check_over_failed_requests_is_never_met_and_round_trips() -> None:
    """Every report's verdict type: ``ok`` with failed requests reads missed,
    the count first; n/a stays n/a; the JSON form reads back the same."""
    ok = Check("added TTFT p50", "<= 10 ms", "3.00 ms", True, "3 ms within 10 ms")
    assert ok.verdict() == "met" and ok.reason() == ""
    failed = ok._replace(failed=2)
    assert failed.met() is False
    assert failed.verdict() == "missed (2 requests failed; 3 ms within 10 ms)"
    said = ok._replace(ok=False, why="sluice: 2 requests failed", failed=2)
    assert said.verdict() == "missed (sluice: 2 requests failed)"  # counted once
    assert Check("x", "y", "n/a", None).verdict() == "n/a"
    assert Check.from_json(failed.as_json()) == failed
    assert failed.as_json()["met"] is False
    assert checks_table([failed])[-1].startswith("Verdicts: **met** when")


def test_failed_requests_through_the_gateway_miss_the_e2e_and_bench_targets() -> None:
    gw = {"concurrency": 8, "process": {"events_per_cpu_s": 52_000.0}, "frames_lost": 0,
          "normal": {"stalls": 0}, "profiles": {"normal": {"errors": {"http_503": 3}}}}  # fmt: skip
    result: dict[str, Any] = {"comparison": {"added_ttft_ms": {"p50": 0.1, "p99": 0.2}},
                              "phases": {"gateway": gw}}  # fmt: skip
    lines = targets_table(result)
    assert _row(lines, "| added TTFT")[-1] == "missed (3 requests failed)"
    assert _row(lines, "| relayed events")[-1] == "missed (3 requests failed)"
    bench: dict[str, Any] = {
        "ttft_c1": {"comparison": {"added_ttft_ms": {"p50": 0.3, "p99": 0.9}},
                    "gateway": {"errors": {"ClientOSError": 2}}},
        "throughput": {"gateway_events_per_cpu_s": 50_000.0},
    }  # fmt: skip
    assert _row(targets_rows(bench), "| added TTFT")[-1] == "missed (2 requests failed)"
    assert _row(targets_rows(bench), "| relayed events")[-1] == "met"


def test_a_cancel_miss_the_direct_path_shares_is_the_machines() -> None:
    def cancel(direct: float) -> str:
        result = {"cancel": {"gateway": {"latency_ms": {"p99": 21.4}},
                             "direct": {"latency_ms": {"p99": direct}}}}  # fmt: skip
        return _row(targets_rows(result), "| client disconnect")[-1]

    assert cancel(12.0).endswith("12.00 ms missed too: the machine's miss)")
    assert cancel(6.1).endswith("6.10 ms within it: Sluice's miss)")
