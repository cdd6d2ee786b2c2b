"""The hot-path benchmark's figures: one row per figure with Sluice, the floor,
their ratio, the target and a verdict; the saturation summary; Markdown and JSON.

A figure's value per repetition comes from that repetition's phase (and, for
added TTFT, the same repetition's ``direct`` phase); a row shows the median
over repetitions and the spread ``[min, max]``. Verdicts compare the median
(or the ratio of medians) with the target; they are reported, never asserted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from loadtest.measure.hotpath import PhaseResult
from loadtest.report.common import Check, machine_line, plot_lines, verdict, write_result
from loadtest.report.stats import percentile

Value = Callable[[PhaseResult, PhaseResult | None], float | None]
PACED: Final = ("paced200", "paced500")
SATURATED_UTIL: Final = 0.9
"""A relay at or above this many cores is saturated (it runs one event loop)."""
SATURATED_SHARE: Final = 0.95
"""A relay delivering less than this share of direct's events/s falls short."""


@dataclass(frozen=True, slots=True)
class Goal:
    """``op bound`` on Sluice's median, or on Sluice / floor when ``relative``."""

    op: Literal["<=", ">="]
    bound: float
    relative: bool = False
    unit: str = ""
    floor_min: float = 0.0
    """A relative bound's yardstick is at least this (in the figure's unit): an added
    latency the floor shows below it is this machine's noise, not a yardstick."""

    def text(self) -> str:
        return (
            f"{self.op} {self.bound:g}x floor"
            if self.relative
            else f"{self.op} {self.bound:g}{self.unit}"
        )

    def met(self, sluice: float | None, ratio: float | None) -> bool | None:
        v = ratio if self.relative else sluice
        if v is None:
            return None
        return v <= self.bound if self.op == "<=" else v >= self.bound

    def judge(
        self, sluice: Stat | None, floor: Stat | None, ratio: float | None
    ) -> tuple[bool | None, str]:
        """(met, why): the verdict (None: not measured) and, in words, the figure
        against the bound and whose miss it is.

        An absolute bound the floor misses too is the machine's (the same load on
        the minimal relay cannot meet it here); a relative one has the floor as
        its yardstick, so it says how far Sluice is from it; a floor figure under
        ``floor_min`` (noise on a shared machine) is raised to it. An added
        latency at or below zero (Sluice no slower than direct) meets a relative
        ``<=`` bound."""
        if sluice is None:
            return None, "Sluice's figure is missing (no stream completed?)"
        if (
            self.relative
            and floor is not None
            and self.floor_min > 0
            and floor.median < self.floor_min
        ):
            r = sluice.median / self.floor_min
            ok = self.met(sluice.median, r)
            return ok, (
                f"{r:.2f}x the floor's raised to {self.floor_min:g}{self.unit} (the floor showed "
                f"{floor.median:,.3g}{self.unit}, below this machine's noise), "
                f"{'within' if ok else 'outside'} {self.text()}"
            )
        if self.relative and ratio is None and floor is not None and sluice.median <= 0:
            ok = self.op == "<="
            return ok, f"Sluice {sluice.median:,.3g}{self.unit}: nothing measurable added"
        return self.met(sluice.median, ratio), self.why(sluice, floor, ratio)

    def why(self, sluice: Stat | None, floor: Stat | None, ratio: float | None) -> str:
        """The verdict in words when both figures are there (see :meth:`judge`)."""
        if sluice is None:
            return "Sluice's figure is missing (no stream completed?)"
        if self.relative:
            if ratio is None:
                return "the floor's figure is missing or zero: no ratio"
            ok = self.met(sluice.median, ratio)
            return f"{ratio:.2f}x the floor's, {'within' if ok else 'outside'} {self.text()}"
        ok = self.met(sluice.median, None)
        text = f"{sluice.median:,.3g}{self.unit} {'within' if ok else 'outside'} {self.text()}"
        if ok or floor is None:
            return text
        if self.met(floor.median, None):
            return f"{text}; the floor met it ({floor.median:,.3g}{self.unit}): Sluice's miss"
        return f"{text}; the floor missed too ({floor.median:,.3g}{self.unit}): the machine's"


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    unit: str
    value: Value
    scenarios: tuple[str, ...]
    digits: int = 2


@dataclass(frozen=True, slots=True)
class Stat:
    """Median and spread of one figure over repetitions."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        vs = [v for v in values if v is not None]
        if not vs:
            return None
        return cls(statistics.median(vs), min(vs), max(vs), len(vs))


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of one scenario: Sluice's and the floor's statistics, their
    ratio and, for a figure with a target, its :class:`~loadtest.report.common.Check`
    (the verdict type every report shares)."""

    scenario: str
    key: str
    figure: str
    unit: str
    digits: int
    sluice: Stat | None
    floor: Stat | None
    ratio: float | None
    check: Check | None = None
    """None for a report-only figure."""

    @property
    def target(self) -> str:
        return "report only" if self.check is None else self.check.goal

    @property
    def verdict(self) -> str:
        """``met`` / ``missed`` against :attr:`target`; ``n/a`` when a value is
        missing; ``report`` for figures without a target."""
        return "report" if self.check is None else verdict(self.check.met())

    @property
    def why(self) -> str:
        """The verdict in words (:meth:`Goal.why`, after the count of Sluice's
        failed requests when there were any); empty for report-only figures."""
        return "" if self.check is None else (self.check.reason() or self.check.why)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("check")
        return {**out, "target": self.target, "verdict": self.verdict, "why": self.why}


def _added(q: float) -> Value:
    def value(r: PhaseResult, d: PhaseResult | None) -> float | None:
        a, b = r.ttft_ms(q), d.ttft_ms(q) if d else None
        return None if a is None or b is None else a - b

    return value


def _cancel(p: str) -> Value:
    return lambda r, _d: (r.cancel_ms or {}).get(p)


def _leg(i: int) -> Value:
    return lambda r, _d: r.slowest_legs_ms[i] if r.slowest_legs_ms else None


def _share(r: PhaseResult, d: PhaseResult | None) -> float | None:
    return r.events_per_s / d.events_per_s if d and d.events_per_s else None


def _one_core(r: PhaseResult, _d: PhaseResult | None) -> float | None:
    return r.concurrency / r.cpu_util if r.cpu_util else None


ALL: Final = ("paced200", "paced500", "firehose", "ttft_c1")
FIGURES: Final[tuple[Figure, ...]] = (
    Figure(
        "cpu_per_1k",
        "relay CPU per 1,000 events",
        " ms",
        lambda r, _d: r.cpu_per_1k_events_ms,
        ("paced200", "paced500", "firehose"),
        1,
    ),
    Figure("cpu_util", "relay CPU utilisation", " cores", lambda r, _d: r.cpu_util, ALL[:3]),
    Figure("events_per_s", "events/s delivered", "", lambda r, _d: r.events_per_s, ALL[:3], 0),
    Figure("share_of_direct", "events/s over direct's", "x", _share, PACED, 3),
    Figure(
        "events_per_cpu_s",
        "events per relay CPU-second",
        "",
        lambda r, _d: r.events_per_cpu_s,
        ("firehose",),
        0,
    ),
    Figure("one_core_streams", "streams at one core (est.)", "", _one_core, PACED, 0),
    Figure(
        "runq_ms_per_s",
        "relay waiting for a core, per second",
        " ms",
        lambda r, _d: (
            r.relay_runq_s / r.wall_s * 1e3 if r.relay_runq_s is not None and r.wall_s else None
        ),
        ALL[:3],
        1,
    ),
    Figure("added_ttft_p50", "added TTFT p50", " ms", _added(50), (*PACED, "ttft_c1"), 3),
    Figure("added_ttft_p99", "added TTFT p99", " ms", _added(99), (*PACED, "ttft_c1"), 3),
    Figure(
        "own_ttft_p99",
        "Sluice's own part of TTFT p99 (its log)",
        " ms",
        lambda r, _d: percentile(r.own_ttft_ms, 99, 1.0) if r.own_ttft_ms else None,
        PACED,
        3,
    ),
    Figure(
        "upstream_headers_p99",
        "upstream headers p99 as Sluice saw it",
        " ms",
        lambda r, _d: percentile(r.upstream_headers_ms, 99, 1.0) if r.upstream_headers_ms else None,
        PACED,
        3,
    ),
    Figure(
        "upstream_ttft_p99",
        "upstream TTFT p99 as Sluice saw it",
        " ms",
        lambda r, _d: percentile(r.upstream_ttft_ms, 99, 1.0) if r.upstream_ttft_ms else None,
        PACED,
        3,
    ),
    *(
        Figure(
            f"slowest_{key}",
            f"slowest 1% of first tokens: {what}",
            " ms",
            _leg(i),
            (*PACED, "ttft_c1"),
            1,
        )
        for i, (key, what) in enumerate(
            (("to_mock", "client -> mock"), ("in_mock", "in the mock"), ("back", "mock -> client"))
        )
    ),
    Figure("cancel_p50", "disconnect -> upstream closed p50", " ms", _cancel("p50"), PACED),
    Figure("cancel_p99", "disconnect -> upstream closed p99", " ms", _cancel("p99"), PACED),
    Figure(
        "cancel_not_closed",
        "disconnects whose upstream stayed open",
        "",
        lambda r, _d: float(r.cancel_not_closed),
        PACED,
        0,
    ),
    Figure("errors", "client errors", "", lambda r, _d: float(r.errors), ALL, 0),
)
SLUICE_ONLY: Final = frozenset({"own_ttft_p99", "upstream_headers_p99", "upstream_ttft_p99"})
"""Figures read from Sluice's summary log lines; the floor relay keeps none."""
GOALS: Final[dict[tuple[str, str], Goal]] = {
    # issue 22's targets: relative to the floor measured in the same run
    ("paced200", "added_ttft_p99"): Goal("<=", 2.0, relative=True, unit=" ms", floor_min=1.0),
    ("paced200", "cancel_p99"): Goal("<=", 2.0, relative=True, unit=" ms", floor_min=1.0),
    ("paced200", "cpu_per_1k"): Goal("<=", 1.0, relative=True),
    ("paced500", "cpu_per_1k"): Goal("<=", 1.2, relative=True),
    ("firehose", "events_per_cpu_s"): Goal(">=", 1.0, relative=True),
    ("ttft_c1", "added_ttft_p50"): Goal("<=", 0.5, unit=" ms"),
}


def _by(phases: list[PhaseResult]) -> dict[tuple[str, str, int], PhaseResult]:
    return {(p.scenario, p.target, p.rep): p for p in phases}


def _stat(
    fig: Figure, sc: str, target: str, phases: list[PhaseResult], idx: dict[Any, PhaseResult]
) -> Stat | None:
    reps = sorted({p.rep for p in phases if p.scenario == sc and p.target == target})
    return Stat.of(fig.value(idx[(sc, target, rep)], idx.get((sc, "direct", rep))) for rep in reps)


def build_rows(phases: list[PhaseResult]) -> list[Row]:
    """Every figure of every scenario that ran, in scenario order."""
    idx = _by(phases)
    ran = [sc for sc in ALL if any(p.scenario == sc for p in phases)]
    rows: list[Row] = []
    for sc in ran:
        for fig in FIGURES:
            if sc not in fig.scenarios:
                continue
            s, f = _stat(fig, sc, "sluice", phases, idx), _stat(fig, sc, "floor", phases, idx)
            ratio = s.median / f.median if s and f and f.median > 0 and s.median >= 0 else None
            goal = GOALS.get((sc, fig.key))
            check = None
            if goal is not None:
                met, why = goal.judge(s, f, ratio)
                measured = "n/a" if s is None else f"{s.median:,.{fig.digits}f}{fig.unit}"
                failed = sum(p.errors for p in phases if p.scenario == sc and p.target == "sluice")
                check = Check(f"{sc}: {fig.label}", goal.text(), measured, met, why, failed)
            rows.append(Row(sc, fig.key, fig.label, fig.unit, fig.digits, s, f, ratio, check))
    return rows


def saturation(phases: list[PhaseResult], offered: dict[str, float]) -> dict[str, Any]:
    """Per relay and paced scenario: CPU cores, share of direct's events/s, and
    whether it saturated (>= 0.9 cores, or < 95% of direct's events/s)."""
    idx = _by(phases)
    out: dict[str, Any] = {}
    for relay in ("floor", "sluice"):
        per: dict[str, Any] = {}
        for sc in PACED:
            reps = sorted({p.rep for p in phases if p.scenario == sc and p.target == relay})
            if not reps:
                continue
            util = Stat.of(idx[(sc, relay, r)].cpu_util for r in reps)
            share = Stat.of(_share(idx[(sc, relay, r)], idx.get((sc, "direct", r))) for r in reps)
            eps = Stat.of(idx[(sc, relay, r)].events_per_s for r in reps)
            sat = bool(
                (util and util.median >= SATURATED_UTIL)
                or (share and share.median < SATURATED_SHARE)
            )
            per[sc] = {
                "cpu_util": util.median if util else None,
                "share_of_direct": share.median if share else None,
                "events_per_s": eps.median if eps else None,
                "offered_events_per_s": offered.get(sc),
                "saturated": sat,
            }
        out[relay] = per
    return out


def _v(s: Stat | dict[str, Any] | None, digits: int) -> str:
    if s is None:
        return "n/a"
    d = s if isinstance(s, dict) else asdict(s)
    med = f"{d['median']:,.{digits}f}"
    if d["n"] < 2:
        return med
    return f"{med} [{d['lo']:,.{digits}f}, {d['hi']:,.{digits}f}]"


def render_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table (also what ``python -m loadtest hotpath`` prints)."""
    lines = [
        "| scenario | figure | Sluice | floor | ratio | target | verdict | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"  # e.g. 0 errors / 0
        unit = r["unit"].strip()
        floor = "- (no log)" if r["key"] in SLUICE_ONLY else _v(r["floor"], r["digits"])
        lines.append(
            f"| {r['scenario']} | {r['figure']}{', ' + unit if unit else ''} "
            f"| {_v(r['sluice'], r['digits'])} | {floor} | {ratio} "
            f"| {r['target']} | {r['verdict']} | {r.get('why', '')} |"
        )
    return "\n".join(lines)


def _saturation_lines(result: dict[str, Any]) -> list[str]:
    """One line per relay: state per paced scenario, and where one core would be reached."""
    one_core = {r["scenario"]: r for r in result["rows"] if r["key"] == "one_core_streams"}
    out: list[str] = []
    for relay, per in result.get("saturation", {}).items():
        parts = []
        for sc, s in per.items():
            util = "n/a" if s["cpu_util"] is None else f"{s['cpu_util']:.2f} cores"
            share = "n/a" if s["share_of_direct"] is None else f"{s['share_of_direct']:.0%}"
            eps = "n/a" if s["events_per_s"] is None else f"{s['events_per_s']:,.0f}"
            offered = s.get("offered_events_per_s") or 0.0
            state = "saturated" if s["saturated"] else "not saturated"
            parts.append(
                f"{sc}: {state} ({util}; {eps} of {offered:,.0f} offered events/s, "
                f"{share} of direct's)"
            )
        est = (one_core.get("paced200") or {}).get(relay)
        if est:
            parts.append(f"one core at ~{est['median']:,.0f} streams (paced200 estimate)")
        if parts:
            out.append(f"- {relay}: " + "; ".join(parts))
    return out


def _phase_lines(result: dict[str, Any]) -> list[str]:
    """Every measured phase, in run order: where each process spent its CPU."""

    def f(v: float | None, digits: int = 2) -> str:
        return "n/a" if v is None else f"{v:,.{digits}f}"

    lines = [
        "| rep | scenario | target | wall s | events | events/s | CPU cores relay / mock / "
        "load generator | TTFT p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lines.append(
            f"| {p['rep'] + 1} | {p['scenario']} | {p['target']} | {f(p['wall_s'], 1)} "
            f"| {p['events']:,} | {f(p['events_per_s'], 0)} "
            f"| {'no relay' if p['target'] == 'direct' else f(p['cpu_util'])} / "
            f"{f(p['mock_cpu_util'])} / {f(p['client_cpu_util'])} "
            f"| {f(p['ttft_p50_ms'])} / {f(p['ttft_p99_ms'])} | {p['errors']} |"
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    m = meta["machine"]
    scs = [f"- `{name}`: {s['description']}" for name, s in result["scenarios"].items()]
    out = [
        "# Sluice hot path vs the floor relay",
        "",
        f"{meta['started']}, {meta['elapsed_s']:.0f} s in all; "
        f"{machine_line(m)}. Gateway from "
        f"`{meta['gateway_src']}`. Mock upstream, relays and load generator share the "
        f"machine; its 1-minute load average went {meta['loadavg_1m_start_end'][0]:.2f} -> "
        f"{meta['loadavg_1m_start_end'][1]:.2f}. Arguments: `{meta['args']}`.",
        "",
        "Scenarios:",
        "",
        *scs,
        "",
        "The floor is `loadtest/relays/floor.py`: one aiohttp ClientSession upstream, "
        "write + drain per SSE event, handler cancellation, nothing else. "
        "Each cell: median over repetitions [min, max]. Ratio = Sluice / floor "
        "(medians; - when the floor is 0). Added TTFT = relay percentile minus "
        "direct's, same repetition. Figures are reported against the targets, never "
        "asserted. Most targets are relative to the floor of this run, so a busy "
        "machine slows both sides; `why` says how far Sluice is from the floor, and "
        "for an absolute target whether the floor missed it too (the machine's miss). "
        "A verdict is never met when Sluice's requests in that scenario failed: "
        "`why` counts them first (the `client errors` row has them per repetition). "
        "The load generator and the mock run at a lower CPU priority than the relays "
        "(`--harness-nice`, in the arguments), so a runnable relay gets a core first; "
        "`relay waiting for a core` is the time the relay was runnable but not running "
        "(the kernel's run-queue delay, `/proc/<pid>/schedstat`): latency the machine "
        "added, not the relay. `slowest 1% of first tokens` splits the streams with the "
        "longest TTFT (mean of the slowest 1%) into client -> mock handler (the relay's "
        "request path, with the upstream connection), in the mock (its 20 ms TTFT plus "
        "its own lag) and mock -> client (the relay's first-token path), matched with the "
        "mock's records on one monotonic clock; Sluice's own part of TTFT and the upstream "
        "TTFT it saw come from its summary log lines.",
        "",
        render_table(result),
        "",
        "## Saturation",
        "",
        f"Saturated: >= {SATURATED_UTIL} cores, or under {SATURATED_SHARE:.0%} of the events/s "
        "the same load got straight from the mock. `streams at one core (est.)` = "
        "streams / relay CPU utilisation.",
        "",
        *_saturation_lines(result),
        "",
        "## Phases",
        "",
        "Relay cores and events/s over the steady window where there is one; mock and "
        "load-generator cores over the whole phase. A busy load generator or mock, or "
        "other work on the machine, limits what any relay can show.",
        "",
        *_phase_lines(result),
        "",
    ]
    out += plot_lines(result)
    return "\n".join(out)


def write_hotpath(result: dict[str, Any], out: Path) -> Path:
    """``hotpath.json`` and ``hotpath.md`` in ``out``; returns the Markdown path."""
    return write_result(result, out / "hotpath.json", render_markdown(result), out / "hotpath.md")
