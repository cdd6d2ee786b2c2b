"""Load through a base URL: a running gateway or fleet (``--target``), or
fleets this module starts (``--fleet 1,2,3``), measured in events/s.

``python -m loadtest --fleet 1,2,3 --fleet-workers 1`` starts, for each count,
Redis + the mock upstream + that many replicas + nginx (:mod:`loadtest.procs.fleet`),
runs one closed-loop phase through nginx, records events/s, stream counts and
the CPU each process group used, and stops the fleet; ``--target URL`` runs
the same phase against a URL whose ``--model`` is served by a mock upstream.
Results: a table on stdout and ``fleet.json`` in the results directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]

from loadtest.client.driver import LoadSpec, run_phase
from loadtest.client.profiles import Profile, Target
from loadtest.client.sampler import cpu_seconds
from loadtest.mock.scenario import MockScenario
from loadtest.procs.fleet import MOCK_MODEL, Fleet
from loadtest.report.common import machine_line, run_meta, write_result


def _busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores), now."""
    t = psutil.cpu_times()
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # inside user already
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - guest)


def _cpu(pids: list[int], children: bool = True) -> float:
    """User + system CPU seconds of ``pids`` (and their children), now."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs_ = [proc, *(proc.children(recursive=True) if children else ())]
        except psutil.NoSuchProcess:
            continue
        for p in procs_:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += cpu_seconds(p)
    return total


async def measure(
    url: str,
    model: str,
    scenario: MockScenario,
    *,
    concurrency: int = 64,
    duration_s: float = 10.0,
    groups: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """One closed-loop phase of ``concurrency`` streaming clients against
    ``url`` for ``duration_s`` seconds (streams in flight then finish).

    Returns ``streams``, ``completed`` (ended with their end marker),
    ``errors`` (up to 10 error strings), ``events`` (content events
    received), ``seconds`` (first start to last end), ``events_per_s``, the
    CPU used in cores by the load generator (``cpu_load_generator``), by the
    whole machine (``cpu_machine``, of ``psutil.cpu_count()``) and by each
    entry of ``groups`` (name -> pids, children included: ``cpu_<name>``)."""
    parts = urlsplit(url)
    target = Target("fleet", parts.hostname or "127.0.0.1", parts.port or 80, model)
    spec = LoadSpec((Profile("normal", "normal", 1.0),), scenario, "closed", concurrency,
                    duration_s=duration_s)  # fmt: skip
    groups = groups or {}
    cpu0 = {name: _cpu(pids) for name, pids in groups.items()}
    me = [psutil.Process().pid]  # its children are the fleet's processes: not counted
    client0 = _cpu(me, children=False)
    busy0 = _busy()
    run = await run_phase(target, spec, "fleet")
    seconds = run.ended - run.started
    events = sum(r.tokens for r in run.results)
    out: dict[str, Any] = {
        "streams": len(run.results),
        "completed": sum(1 for r in run.results if r.done and r.error is None),
        "errors": [r.error for r in run.results if r.error][:10],
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds if seconds > 0 else 0.0,
        "cpu_load_generator": (_cpu(me, children=False) - client0) / seconds,
        "cpu_machine": (_busy() - busy0) / seconds,
    }
    for name, pids in groups.items():
        out[f"cpu_{name}"] = (_cpu(pids) - cpu0[name]) / seconds
    return out


def fleet_groups(fleet: Fleet) -> dict[str, list[int]]:
    """Process groups of a fleet for CPU accounting."""
    assert fleet.mock is not None and fleet.nginx is not None and fleet.redis is not None
    assert fleet.nginx.proc is not None
    return {
        "gateways": [r.pid for r in fleet.gateways],
        "nginx": [fleet.nginx.proc.pid],
        "mock": [fleet.mock.pid],
        "redis": [fleet.redis.pid],
    }


async def run(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Every measurement ``args`` asks for, one row per setup."""
    scenario = MockScenario(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, tokens=args.tokens)
    rows: list[dict[str, Any]] = []
    if args.target:
        row = await measure(args.target, args.model, scenario,
                            concurrency=args.concurrency, duration_s=args.duration)  # fmt: skip
        rows.append({"setup": args.target, **row})
    for n in [int(x) for x in args.fleet.split(",")] if args.fleet else []:
        fleet = Fleet(out / f"fleet-{n}x{args.fleet_workers}", n, 0, args.fleet_workers,
                      nginx_workers=1)  # fmt: skip
        await asyncio.to_thread(fleet.start)
        try:
            row = await measure(fleet.url, MOCK_MODEL, scenario, concurrency=args.concurrency,
                                duration_s=args.duration, groups=fleet_groups(fleet))  # fmt: skip
        finally:
            await asyncio.to_thread(fleet.stop)
        setup = f"{n} replica(s) x {args.fleet_workers} worker(s) behind nginx"
        rows.append({"setup": setup, **row})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| setup | streams | completed | events/s | CPU (cores): gateways | nginx | mock"
        " | redis | load generator | machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        names = ("gateways", "nginx", "mock", "redis", "load_generator", "machine")
        cpu = [r.get(f"cpu_{k}") for k in names]
        cells = ["" if c is None else f"{c:.2f}" for c in cpu]
        lines.append(f"| {r['setup']} | {r['streams']} | {r['completed']} |"
                     f" {r['events_per_s']:,.0f} | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main(args: argparse.Namespace, out: Path) -> None:
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(run(args, out))
    meta = run_meta(args, out=str(out))
    result = {"meta": meta, "rows": rows}
    markdown = (
        f"# Events/s through a URL or fleets behind nginx\n\n{machine_line(meta['machine'])}; "
        "mock, fleet and load generator share the machine.\n\n"
        f"{table(rows)}\n"
    )
    md = write_result(result, out / "fleet.json", markdown, out / "fleet.md")
    print(table(rows), flush=True)
    print(f"done in {time.monotonic() - t0:.0f}s; {md}", flush=True)
