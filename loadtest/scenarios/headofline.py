"""``python -m loadtest headofline`` (in ``make bench``): large request bodies
against the streams already running, Sluice against the floor relay.

Issue 26, AIGatewayBench's head-of-line scenario, both relays in the same run.

Processes: an upstream of this module's own (``--serve-upstream``: paced
Chat Completions streams for small requests; for a body over 256 KiB, read
whole and not parsed, a one-event stream with usage), Sluice on it
(``max_body_bytes`` 64 MiB) and the floor relay (:mod:`loadtest.relays.floor`,
its aiohttp body limit raised to 64 MiB, ``--serve-floor``).

For each prompt size (none, then 1, 8 and 32 MB of agent-like JSON: many
turns of code and prose), through the floor and through Sluice in turn:
``--streams`` paced streams (one event every ``--itl-ms``) run for
``--phase-s`` while one client sends large prompts one after another. The
figure is the p99 gap between consecutive events of the small streams; the
*added* gap is that minus the same relay's p99 with no large prompt. Then a
burst: ``--burst`` clients each send a 32 MB prompt at once to Sluice (its
``max_body_bytes_in_flight`` is ``--budget-mib``); Sluice's peak RSS
(``VmHWM``, reset before the burst) against its idle RSS and the budget,
and how many were served or refused (503).

Targets (reported, never asserted): a 32 MB prompt adds < 10 ms to Sluice's
p99 gap, a 1 MB prompt < 2 ms; peak RSS over idle within ~3x the budget
(a body is held as read, plus the copy sent upstream).

Writes ``headofline.json`` and ``headofline.md`` under ``--out`` (default
``loadtest/results/headofline-<timestamp>/``). ``--gateway-src DIR`` runs
another build's ``gateway`` package (a "before" figure; ``--budget-mib 0``
for a build without the budget)::

    mkdir /tmp/before && git archive <rev> gateway | tar -x -C /tmp/before
    python -m loadtest headofline --gateway-src /tmp/before --budget-mib 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from aiohttp import web

from loadtest import cli, procs
from loadtest.client.sampler import cpu_seconds
from loadtest.measure.headofline import (
    BODY_LIMIT,
    agent_prompt,
    burst,
    run_phase,
    serve_floor,
    stages,
    upstream_app,
)
from loadtest.measure.phase import say
from loadtest.report.common import run_meta
from loadtest.report.headofline import report, verdicts
from loadtest.report.stats import percentile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest headofline",
        description=__doc__.split("\n")[0].replace("``", ""),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--streams", type=int, default=16, help="paced small streams")
    a("--itl-ms", type=float, default=50.0, help="gap between a small stream's events")
    a("--events", type=int, default=40, help="events per small stream (then a new one)")
    a("--sizes-mb", type=float, nargs="+", default=[1, 8, 32], help="large prompt sizes")
    a("--phase-s", type=float, default=6.0, help="seconds per (relay, size) phase")
    a("--burst", type=int, default=12, help="32 MB prompts sent at once in the RSS burst")
    a("--budget-mib", type=int, default=128, help="Sluice's max_body_bytes_in_flight (0: unset)")
    a("--gateway-src", type=Path, default=None, help="another build's gateway package")
    a("--out", type=Path, default=None, help="results directory")
    a("--stages", action="store_true", help="only the in-process cost per stage, µs/MB")
    a(
        "--serve-upstream",
        type=int,
        default=None,
        metavar="PORT",
        help="internal: serve this module's upstream on PORT",
    )
    a(
        "--serve-floor",
        nargs=2,
        default=None,
        metavar=("PORT", "UPSTREAM"),
        help="internal: serve the floor relay (64 MiB bodies) on PORT in front of UPSTREAM",
    )
    cli.add_quick(p, streams=4, sizes_mb=[1.0], phase_s=1.5, burst=2)
    return p


# -- the run -------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Path:
    out = cli.results_dir(args.out, "headofline")
    up_port, floor_port = procs.free_port(), procs.free_port()
    upstream = procs.spawn(
        "headofline_upstream",
        ["-m", "loadtest.scenarios.headofline", "--serve-upstream", str(up_port),
         "--events", str(args.events), "--itl-ms", str(args.itl_ms)],
        up_port, out,
    )  # fmt: skip
    up_url = f"http://{procs.HOST}:{up_port}"
    floor = procs.spawn(
        "headofline_floor",
        ["-m", "loadtest.scenarios.headofline", "--serve-floor", str(floor_port), up_url],
        floor_port, out,
    )  # fmt: skip
    extra = f"max_body_bytes = {BODY_LIMIT}\n"
    if args.budget_mib:
        extra += f"max_body_bytes_in_flight = {args.budget_mib << 20}\n"
    gw = procs.start_gateway(out, up_port, src=args.gateway_src, server_extra=extra)
    result: dict[str, Any] = {
        "meta": run_meta(args),
        "phases": [],
    }
    try:
        for m in (upstream, floor, gw):
            await procs.wait_ready(m, "/healthz", timeout_s=60)
        relays = {"floor": floor.url, "sluice": gw.url}
        pids = {"floor": floor.pid, "sluice": gw.pid}
        for mb in [0.0, *args.sizes_mb]:
            prompt = agent_prompt(mb) if mb else None
            for name, base in relays.items():
                say(f"headofline: {name}, {mb:g} MB prompts, {args.phase_s:g}s")
                proc = psutil.Process(pids[name])
                cpu0 = cpu_seconds(proc)
                ph = await run_phase(base, prompt, args)
                cpu_s = cpu_seconds(proc) - cpu0
                result["phases"].append({
                    "relay": name, "prompt_mb": mb,
                    "prompt_bytes": len(prompt) if prompt else 0,
                    "gap_p99_ms": percentile(ph.gaps, 99), "gap_p50_ms": percentile(ph.gaps, 50),
                    "gap_max_ms": max(ph.gaps) * 1000 if ph.gaps else None,
                    "events": len(ph.gaps), "prompts": ph.prompts,
                    "prompt_errors": ph.prompt_errors, "stream_errors": ph.stream_errors,
                    "relay_cpu_s": cpu_s,
                })  # fmt: skip
        say(f"headofline: burst of {args.burst} x 32 MB prompts at Sluice")
        result["burst"] = await burst(gw.url, gw.pid, args)
    finally:
        for m in (gw, floor, upstream):
            procs.stop(m)
    verdicts(result)
    (out / "headofline.json").write_text(json.dumps(result, indent=2))
    md = out / "headofline.md"
    md.write_text(report(result))
    print(report(result), flush=True)
    return md


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve_upstream is not None:
        web.run_app(upstream_app(args.events, args.itl_ms / 1000), host=procs.HOST,
                    port=args.serve_upstream, access_log=None, print=None)  # fmt: skip
        return
    if args.serve_floor is not None:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return
    if args.stages:
        for row in stages(args.sizes_mb):
            print(json.dumps(row), flush=True)
        return
    procs.raise_nofile(4096)
    path = asyncio.run(run(args))
    say(f"headofline report: {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
