"""``result.json`` and ``report.md`` from a load test result dict."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson
import psutil  # type: ignore[import-untyped]


def machine_info() -> dict[str, Any]:
    """CPU count, model, memory, OS, Python and aiohttp versions."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
    }


def machine_line(m: Mapping[str, Any]) -> str:
    """:func:`machine_info` in words, the way every report states it."""
    return (
        f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}, aiohttp {m['aiohttp']}"
    )


def run_meta(args: Any = None, started: float | None = None, **extra: Any) -> dict[str, Any]:
    """Every result's ``meta``: when it started (local time, ISO 8601;
    ``started`` as ``time.time()``, default now), the machine
    (:func:`machine_info`), the command's options as strings (``args``, an
    ``argparse.Namespace``, when given) and ``extra``."""
    at = time.localtime(started if started is not None else time.time())
    meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", at)}
    meta["machine"] = machine_info()
    if args is not None:
        meta["args"] = {k: str(v) for k, v in vars(args).items()}
    return meta | extra


def fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def _p(stats: dict[str, Any] | None, key: str) -> str:
    return "n/a" if not stats else fmt(stats.get(key))


def get_path(d: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


FLAT_KIB_PER_S: Final = 256.0
"""An RSS slope at or under this (KiB/s) counts as flat: well under a MiB per
minute, against the unbounded baseline's tens of MB/s."""


def verdict(ok: bool | None) -> str:
    """``met`` / ``missed``; ``n/a`` when the figure was not measured."""
    return "n/a" if ok is None else ("met" if ok else "missed")


class Check(NamedTuple):
    """One target of a report: the target, its goal, what this run measured,
    whether the figure is within the goal (``ok``; None: not measured), why (for
    a miss, whose miss: Sluice's, or the machine's when the floor relay or the
    direct path missed too) and how many requests behind the figure failed.

    The verdict type every report shares: the end-to-end, bench, real-model,
    head-of-line and routing reports' target tables, the backpressure proof,
    and each targeted row of the hotpath report
    (:class:`loadtest.report.hotpath.Row`). A figure measured over failed
    requests proves nothing, so :meth:`met` is never True when ``failed`` > 0,
    whatever ``ok`` says, and the verdict names the count."""

    target: str
    goal: str
    measured: str
    ok: bool | None
    why: str = ""
    failed: int = 0

    def met(self) -> bool | None:
        """The verdict as a value: ``ok``, but False when a request failed."""
        return False if self.failed > 0 else self.ok

    def reason(self) -> str:
        """Why it was missed (the count of failed requests first, unless
        ``why`` already says it); empty unless missed."""
        if self.met() is not False:
            return ""
        parts = [self.why] if self.why else []
        count = f"{self.failed} requests failed"
        if self.failed > 0 and count not in self.why:
            parts.insert(0, count)
        return "; ".join(parts)

    def verdict(self) -> str:
        """``met``, ``missed (<why>)`` or ``n/a`` (not measured)."""
        text, why = verdict(self.met()), self.reason()
        return f"{text} ({why})" if why else text

    def as_json(self) -> dict[str, Any]:
        """The fields and the verdict (``met`` a bool or None, ``verdict`` text)."""
        return {**self._asdict(), "met": self.met(), "verdict": self.verdict()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Check:
        """The :class:`Check` that :meth:`as_json` wrote."""
        return cls(*(d.get(f, cls._field_defaults.get(f)) for f in cls._fields))


VERDICTS_NOTE: Final = (
    "Verdicts: **met** when the figure is within the goal and no request behind "
    "it failed; **missed** otherwise, with why: failed requests first (a figure "
    "over failed requests proves nothing), then how far the figure is from the "
    "goal and whose miss it is: where the floor relay or the direct path ran the "
    "same load and missed the goal too, the machine's miss (a busy core delays "
    "every relay), otherwise Sluice's; **n/a** when the figure was not measured. "
    "Figures are reported against the goals, never asserted."
)
"""What every report says under its target table about its verdicts."""


def checks_table(
    checks: list[Check], measured: str = "measured here", note: bool = True
) -> list[str]:
    """Every report's target table: ``| target | goal | <measured> | verdict |``,
    then (``note``; off where the report said it already) :data:`VERDICTS_NOTE`."""
    lines = [f"| target | goal | {measured} | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.target} | {c.goal} | {c.measured} | {c.verdict()} |" for c in checks]
    return [*lines, "", VERDICTS_NOTE] if note else lines


def floor_why(
    value: float | None, floor: float | None, bound: float, unit: str, floor_name: str
) -> str:
    """Whose miss ``value`` over ``bound`` is, when a floor (the floor relay,
    the direct path) ran the same load: the machine's when the floor is over
    the bound too, else Sluice's; empty when met or either figure is missing."""
    if value is None or floor is None or value <= bound:
        return ""
    if floor > bound:
        return f"{floor_name} {floor:,.2f}{unit} missed too: the machine's miss"
    return f"{floor_name} {floor:,.2f}{unit} within it: Sluice's miss"


def gaps_why(direct_stalls: int | None, gateway_stalls: int | None) -> str:
    """Whose miss frames lost / gaps through the gateway are: gaps > 2x pace that
    the direct path (mock -> load generator, no relay) shows too are the
    machine's (a busy core delays every reader), not Sluice's."""
    if direct_stalls is None or not gateway_stalls:
        return ""
    if direct_stalls > 0:
        return f"direct had {direct_stalls} such gaps too: the machine's share"
    return "direct had none: Sluice's"


def phase_errors(phase: Mapping[str, Any] | None) -> int:
    """Requests of a phase (``stats.summarize``'s, or bench's brief form) that
    failed, disconnects on purpose not counted: what a :class:`Check` over the
    phase's figures counts as ``failed``."""
    if not phase:
        return 0
    if isinstance(phase.get("errors"), Mapping):  # bench's brief: summed already
        return int(sum(phase["errors"].values()))
    profiles = phase.get("profiles") or {}
    return int(sum(sum((p.get("errors") or {}).values()) for p in profiles.values()))


def _le(v: Any, bound: float) -> bool | None:
    return None if v is None else float(v) <= bound


def _all(*oks: bool | None) -> bool | None:
    return None if any(ok is None for ok in oks) else all(oks)


BP_SIDES: Final = ("baseline", "sluice")
BP_TARGET: Final = (
    "Sluice vs baseline RSS slope, stalled clients; streams held and failed "
    "requests (baseline / Sluice)"
)


def backpressure_verdict(bp: Mapping[str, Any] | None) -> Check:
    """The backpressure proof as a :class:`Check`: met only when, on both
    sides, no request failed (``failed`` counts both sides') and every stalled
    stream asked for was held, Sluice's RSS slope stayed flat (<=
    :data:`FLAT_KIB_PER_S`) and the baseline's grew (the clients really backed
    bytes up: the baseline is the floor of this proof, and a baseline that did
    not grow means the run proved nothing). Anything missing or unmeasured
    counts against it: an empty or failed run is missed; ``why`` lists every
    reason. ``bp`` is ``result["backpressure"]`` (None: not run, ``n/a``)."""
    flat = f"flat (<= {FLAT_KIB_PER_S:g} KiB/s)"
    goal = f"{flat} vs growing; {get_path(bp, 'clients') or 'all'} held, 0 failed"
    if bp is None:
        return Check(BP_TARGET, goal, "not run", None)
    sl = get_path(dict(bp), "sluice", "rss_trend", "slope_kib_per_s")
    base = get_path(dict(bp), "baseline", "rss_trend", "slope_kib_per_s")
    held = " / ".join(f"{get_path(bp, n, 'streams_held')}" for n in BP_SIDES)
    errs = " / ".join(f"{get_path(bp, n, 'errors')}" for n in BP_SIDES)
    measured = f"{fmt(sl, ' KiB/s')} vs {fmt(base, ' KiB/s')}; held {held}, failed {errs}"
    failed = sum(e for n in BP_SIDES if isinstance(e := get_path(bp, n, "errors"), int))
    reasons: list[str] = []
    clients = bp.get("clients")
    if not isinstance(clients, int) or clients <= 0:
        reasons.append("no stalled clients asked for")
        clients = 0
    for name in BP_SIDES:
        side = bp.get(name) or {}
        errors, held = side.get("errors"), side.get("streams_held")
        if not isinstance(errors, int):
            reasons.append(f"{name}: failed requests not counted")
        elif errors > 0:
            reasons.append(f"{name}: {errors} requests failed")
        if not isinstance(held, int):
            reasons.append(f"{name}: held streams not counted")
        elif held < clients:
            reasons.append(f"{name}: {held} of {clients} stalled streams held")
    if sl is None:
        reasons.append("sluice: RSS trend not measured")
    elif float(sl) > FLAT_KIB_PER_S:
        reasons.append(f"sluice: RSS grew {float(sl):,.0f} KiB/s (> {FLAT_KIB_PER_S:g})")
    if base is None:
        reasons.append("baseline: RSS trend not measured")
    elif float(base) <= FLAT_KIB_PER_S:
        reasons.append("baseline: RSS did not grow, so nothing was backed up to bound")
    return Check(BP_TARGET, goal, measured, not reasons, "; ".join(reasons), failed)


def targets_table(result: dict[str, Any]) -> list[str]:
    """The targets next to what this run measured and a verdict (goals, not assertions)."""
    cmp_ = result.get("comparison") or {}
    phases = result.get("phases", {})
    slow = phases.get("slow")
    gw = phases.get("gateway")
    bp = result.get("backpressure")
    ttft50 = get_path(cmp_, "added_ttft_ms", "p50")
    ttft99 = get_path(cmp_, "added_ttft_ms", "p99")
    eps = get_path(gw, "process", "events_per_cpu_s")
    util = get_path(gw, "process", "cpu_util")
    eps_why = ""
    if util is not None and float(util) < 0.5:
        eps_why = (
            f"paced: the gateway was {float(util):.2f} cores busy, so each event pays its own"
            " loop wake-up and syscalls; `make bench`'s unpaced phase measures the rate"
        )
    lost, stalls = get_path(gw, "frames_lost"), get_path(gw, "normal", "stalls")
    direct_stalls = get_path(phases.get("direct"), "normal", "stalls")
    failed = phase_errors(gw)  # through the gateway: a figure over failed requests proves nothing
    slope = get_path(slow, "rss_trend", "slope_kib_per_s")
    cancel99 = get_path(slow, "cancel", "latency_ms", "p99")
    flat = f"flat (<= {FLAT_KIB_PER_S:g} KiB/s)"
    checks = [
        Check(
            f"added TTFT p50 / p99 (c={get_path(gw, 'concurrency')}; c=1 is in `make bench`)",
            "<= 0.5 / 1 ms",
            f"{fmt(ttft50, ' ms', 3)} / {fmt(ttft99, ' ms', 3)}",
            _all(_le(ttft50, 0.5), _le(ttft99, 1.0)),
            failed=failed,
        ),
        Check(
            "relayed events per gateway CPU-second",
            ">= 40,000",
            fmt(eps, "", 0),
            None if eps is None else float(eps) >= 40_000,
            eps_why,
            failed,
        ),
        Check(
            "frames lost / gaps > 2x pace (gateway phase, normal clients)",
            "0 / 0",
            f"{fmt(lost)} / {fmt(stalls)}",
            _all(_le(lost, 0), _le(stalls, 0)),
            gaps_why(direct_stalls, stalls),
            failed,
        ),
        Check(
            "RSS slope with slow + stalled clients",
            flat,
            f"{fmt(slope, ' KiB/s')} over {fmt(get_path(slow, 'rss_trend', 'window_s'), ' s', 0)}",
            _le(slope, FLAT_KIB_PER_S),
        ),
        backpressure_verdict(bp),
        Check(
            "client disconnect -> upstream close p99",
            "<= 10 ms",
            fmt(cancel99, " ms", 2),
            _le(cancel99, 10.0),
        ),
    ]
    return checks_table(checks)


def phases_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| phase | requests | events/s | TTFT p50 / p99 ms | ITL p50 / p99 ms "
        "| E2E p50 / p99 ms | frames lost | stalls | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ph in result.get("phases", {}).items():
        n = ph["normal"]
        errors = sum(sum(p["errors"].values()) for p in ph["profiles"].values())
        lines.append(
            f"| {name} | {ph['requests']} | {ph['events_per_s']:,.0f} "
            f"| {_p(n['ttft_ms'], 'p50')} / {_p(n['ttft_ms'], 'p99')} "
            f"| {_p(n['itl_ms'], 'p50')} / {_p(n['itl_ms'], 'p99')} "
            f"| {_p(n['e2e_ms'], 'p50')} / {_p(n['e2e_ms'], 'p99')} "
            f"| {ph['frames_lost']} | {n['stalls']} | {errors} |"
        )
    return lines


def profiles_table(phase: dict[str, Any]) -> list[str]:
    lines = [
        "| profile | requests | completed | disconnected on purpose | tokens | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in phase["profiles"].items():
        lines.append(
            f"| {name} | {p['requests']} | {p['completed']} | {p['disconnected_on_purpose']} "
            f"| {p['tokens']} | {p['errors'] or ''} |"
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    m = meta["machine"]
    out = [
        "# Sluice load test report",
        "",
        f"Started {meta['started']}, finished {meta.get('finished', '?')}. Machine: "
        f"{machine_line(m)}. Scenario `{meta['scenario']}`; "
        "mock upstream, gateway and load generator share the machine.",
        "",
    ]
    if "gateway_error" in meta:
        out += [f"**Gateway unavailable**: {meta['gateway_error']}", ""]
    out += ["## Targets", "", *targets_table(result), ""]
    out += ["## Phases (normal clients)", "", *phases_table(result), ""]
    cmp_ = result.get("comparison")
    if cmp_:
        out += [
            "## Gateway vs direct",
            "",
            f"- added TTFT p50 {fmt(cmp_['added_ttft_ms']['p50'], ' ms', 3)}, "
            f"p99 {fmt(cmp_['added_ttft_ms']['p99'], ' ms', 3)}",
            f"- added ITL p50 {fmt(cmp_['added_itl_ms']['p50'], ' ms', 3)}, "
            f"p99 {fmt(cmp_['added_itl_ms']['p99'], ' ms', 3)}",
            "- where the added TTFT goes (p50 / p99): before the upstream sees the request "
            f"{fmt(get_path(cmp_, 'added_to_upstream_ms', 'p50'), ' ms', 3)} / "
            f"{fmt(get_path(cmp_, 'added_to_upstream_ms', 'p99'), ' ms', 3)}; "
            "upstream first token -> client "
            f"{fmt(get_path(cmp_, 'added_first_token_relay_ms', 'p50'), ' ms', 3)} / "
            f"{fmt(get_path(cmp_, 'added_first_token_relay_ms', 'p99'), ' ms', 3)}",
            f"- throughput ratio (events/s through the gateway / direct) "
            f"{fmt(cmp_['throughput_ratio'], '', 3)}",
            "",
        ]
    slow = result.get("phases", {}).get("slow")
    if slow:
        tr = slow.get("rss_trend") or {}
        bufs = [
            s["write_buffer_bytes"] for s in slow["samples"] if s["write_buffer_bytes"] is not None
        ]
        out += [
            "## Slow-client phase",
            "",
            *profiles_table(slow),
            "",
            f"- gateway RSS {fmt(tr.get('first_mib'), ' MiB', 1)} -> "
            f"{fmt(tr.get('last_mib'), ' MiB', 1)} (max {fmt(tr.get('max_mib'), ' MiB', 1)}), "
            f"slope {fmt(tr.get('slope_kib_per_s'), ' KiB/s')}",
            f"- max bytes buffered toward clients (sluice_write_buffer_bytes): "
            f"{fmt(max(bufs) if bufs else None, ' B', 0)}",
            f"- cancel latency (client disconnect -> upstream close), ms: "
            f"{_fmt_pct(get_path(slow, 'cancel', 'latency_ms'))}; not closed "
            f"{get_path(slow, 'cancel', 'not_closed')}, "
            f"unmatched {get_path(slow, 'cancel', 'unmatched')}",
            f"- upstream (mock) outcomes: {get_path(slow, 'upstream', 'outcomes')}, drain waits "
            f"{get_path(slow, 'upstream', 'drain_waits')}",
            "",
        ]
    bp = result.get("backpressure")
    if bp:
        out += backpressure_section(bp)
    out += plot_lines(result)
    return "\n".join(out)


def backpressure_section(bp: dict[str, Any]) -> list[str]:
    """The proof's Markdown: per relay requests failed, streams held, RSS; the
    first distinct error messages; the verdict and what it was missed on."""
    clients = bp.get("clients")
    v = backpressure_verdict(bp)
    out = [
        "## Backpressure proof",
        "",
        f"{clients} stalled clients on each relay (200 and a first event, then no reads); "
        f"upstream `{bp.get('scenario', '?')}` streams as fast as allowed.",
        "",
        "| relay | failed requests | streams held | RSS first -> last MiB | growth MiB "
        "| max MiB | slope KiB/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("baseline", "baseline (no drain)"), ("sluice", "Sluice")):
        side = bp.get(name) or {}
        tr = side.get("rss_trend") or {}
        first, last = tr.get("first_mib"), tr.get("last_mib")
        growth = None if first is None or last is None else float(last) - float(first)
        out.append(
            f"| {label} | {fmt(side.get('errors'))} | {fmt(side.get('streams_held'))} "
            f"of {clients} | {fmt(first, '', 1)} -> {fmt(last, '', 1)} | {fmt(growth, '', 1)} "
            f"| {fmt(tr.get('max_mib'), '', 1)} | {fmt(tr.get('slope_kib_per_s'), '', 0)} |"
        )
    out.append("")
    for name in BP_SIDES:
        samples = get_path(bp, name, "error_samples") or []
        if samples:
            out += [f"First distinct errors, {name}:", "", *(f"- `{m}`" for m in samples), ""]
    out += [f"Baseline stopped: {get_path(bp, 'baseline', 'stopped')}.", ""]
    out += [*checks_table([v], note=False), ""]  # the Targets table said what verdicts mean
    return out


def plot_lines(result: dict[str, Any]) -> list[str]:
    """Markdown image lines for ``result["plots"]`` (paths next to the report)."""
    out: list[str] = []
    for plot in result.get("plots", []):
        out += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
    return out


def _fmt_pct(p: dict[str, float] | None) -> str:
    if not p:
        return "n/a"
    return (
        ", ".join(f"{k} {v:.2f}" for k, v in p.items() if k.startswith("p")) + f" (n={p['n']:.0f})"
    )


def write_result(result: dict[str, Any], json_path: Path, markdown: str, md_path: Path) -> Path:
    """``result`` as JSON (numpy values and non-str keys allowed) to
    ``json_path``, ``markdown`` to ``md_path``; returns ``md_path``."""
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    json_path.write_bytes(orjson.dumps(result, option=opts, default=str))
    md_path.write_text(markdown)
    return md_path


def write_report(result: dict[str, Any], out: Path) -> Path:
    """Write result.json and report.md into ``out``; returns the report path."""
    return write_result(result, out / "result.json", render_markdown(result), out / "report.md")
