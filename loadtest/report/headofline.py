"""The head-of-line benchmark's verdicts (:func:`verdicts`: one
:class:`~loadtest.report.common.Check` per prompt size with a target, never
met with a failed request, the machine's miss when the floor missed too) and
its Markdown (:func:`report`)."""

from __future__ import annotations

from typing import Any, Final

from loadtest.report.common import Check, checks_table, verdict

TARGETS_MS: Final = {1.0: 2.0, 32.0: 10.0}


def verdicts(result: dict[str, Any]) -> None:
    """Each phase's added p99 gap (over the same relay's with no prompt) and
    CPU per prompt MB; for Sluice's phases with a target, a
    :class:`~loadtest.report.common.Check` (``check``, and its ``verdict``)."""
    base = {p["relay"]: p["gap_p99_ms"] for p in result["phases"] if p["prompt_mb"] == 0}
    idle = {p["relay"]: p for p in result["phases"] if p["prompt_mb"] == 0}
    for p in result["phases"]:
        if p["prompts"] and p["relay"] in idle:
            extra = p["relay_cpu_s"] - idle[p["relay"]]["relay_cpu_s"]
            p["cpu_ms_per_mb"] = extra * 1000 / (p["prompts"] * p["prompt_bytes"] / 1e6)
        if p["prompt_mb"] and p["gap_p99_ms"] is not None and base.get(p["relay"]) is not None:
            p["added_p99_ms"] = p["gap_p99_ms"] - base[p["relay"]]
    floor = {p["prompt_mb"]: p for p in result["phases"] if p["relay"] == "floor"}
    for p in result["phases"]:
        target = TARGETS_MS.get(p["prompt_mb"])
        if p["relay"] == "sluice" and target is not None:
            p["target_ms"] = target
            check = _check(p, idle.get("sluice"), floor.get(p["prompt_mb"]), target)
            p["check"], p["verdict"] = check.as_json(), check.verdict()


def _check(
    p: dict[str, Any], idle: dict[str, Any] | None, floor: dict[str, Any] | None, target: float
) -> Check:
    """Sluice's added p99 gap at one prompt size against ``target`` ms. A prompt
    that failed stressed nothing, and a small stream that failed measured
    nothing: either counts as failed (never ``met``); so does a phase with no
    prompt served. A miss the floor relay shares (its own added gap at the same
    size over the target too) is the machine's."""
    failed = _failed(p) + (_failed(idle) if idle is not None else 0)
    added = p.get("added_p99_ms")
    goal = f"< {target:g} ms added p99 gap"
    served = f"{p['prompts']} prompts served"
    if added is None:
        return Check(_TARGET.format(mb=p["prompt_mb"]), goal, "n/a", False, "no figure", failed)
    ok = added < target and p["prompts"] > 0
    why = f"{added:.1f} ms {'within' if added < target else 'over'} {target:g} ms, {served}"
    floor_added = None if floor is None else floor.get("added_p99_ms")
    if not ok and floor_added is not None:
        whose = "the machine's miss" if floor_added >= target else "Sluice's miss"
        verb = "missed too" if floor_added >= target else "met it"
        why += f"; the floor {verb} ({floor_added:.1f} ms added): {whose}"
    measured = f"{added:.1f} ms ({served})"
    return Check(_TARGET.format(mb=p["prompt_mb"]), goal, measured, ok, why, failed)


_TARGET: Final = "Sluice: small streams' added p99 gap, {mb:g} MB prompts"


def _failed(phase: dict[str, Any]) -> int:
    """Requests of a phase that did not complete: prompts and small streams."""
    return sum(phase["prompt_errors"].values()) + phase["stream_errors"]


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Head-of-line: large prompts vs the streams already running",
        "",
        "| prompt | relay | p99 gap ms | added ms | target | verdict | prompts sent "
        "| relay CPU ms per prompt MB | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        short = verdict(p["check"]["met"]) if "check" in p else ""  # why: the targets below
        errors = dict(p["prompt_errors"])
        if p["stream_errors"]:
            errors["streams"] = p["stream_errors"]
        lines.append(
            f"| {p['prompt_mb']:g} MB | {p['relay']} | {_f(p['gap_p99_ms'])} | "
            f"{_f(p.get('added_p99_ms'))} | {_f(p.get('target_ms'), '< ')} | "
            f"{short} | {p['prompts']} | {_f(p.get('cpu_ms_per_mb'))} "
            f"| {errors or ''} |"
        )
    checks = [Check.from_json(p["check"]) for p in result["phases"] if "check" in p]
    if checks:
        lines += ["", *checks_table(checks)]
    b = result.get("burst")
    if b:
        lines += [
            "",
            f"Burst: {b['prompts']} x {b['prompt_bytes'] / 1e6:.0f} MB prompts at once to Sluice "
            f"(budget {b['budget_mib']} MiB): statuses {b['statuses']}, idle RSS "
            f"{b['idle_rss_mib']:.0f} MiB, peak {b['peak_rss_mib']:.0f} MiB "
            f"(+{b['peak_over_idle_mib']:.0f} MiB; all bodies at once would be "
            f"{b['unbounded_mib']:.0f} MiB), {b['seconds']:.1f} s.",
        ]
    return "\n".join(lines) + "\n"


def _f(v: float | None, prefix: str = "") -> str:
    return "" if v is None else f"{prefix}{v:.1f}"
