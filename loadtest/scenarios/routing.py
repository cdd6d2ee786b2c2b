"""``python -m loadtest routing`` (a section of ``make bench``): routing across
deployments, measured.

Three mock deployments of one model on loopback (one process of
:func:`loadtest.mock.upstream.create_mock_app` apps): ``fast`` (TTFT
``FAST_TTFT_MS``), ``slow`` (5x that TTFT) and ``flaky`` (as fast, until half
way through each run; from then on it answers 503 to every request). For
each strategy the gateway is started on them (``retries = 2``: a failure
before the first token moves to another deployment), a closed loop of
``--concurrency`` streaming clients runs for ``--duration-s``, and this
records, per strategy:

- the share of requests (attempts, from ``sluice_deployment_requests_total``)
  each deployment took over time (``routing_share.png``);
- client TTFT p50/p99 (a request that did not complete counts as an
  infinite TTFT) and failed requests;
- when ``flaky`` began failing and when its cooldown started (from
  ``/readyz``: observed time minus the cooldown already spent), the requests
  that failed after that, and the attempts ``flaky`` still got (half-open
  trials).

Verdicts (reported, never asserted), each impossible to meet with a failed
request in the runs it compares:

- ``latency`` beats ``weighted`` (round robin at equal weights) on client
  TTFT p99, with no failed request in either run;
- ``latency`` loses no request after ``flaky``'s cooldown starts (a cooldown
  must have been seen, and requests made after it).

Results: ``routing.json``, ``routing.md`` and ``routing_share.png`` in the
output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from loadtest import cli, procs
from loadtest.measure.phase import say
from loadtest.measure.routing import (
    DEPLOYMENTS,
    STRATEGIES,
    Run,
    mock_apps,
    run_strategy,
)
from loadtest.report.routing import plot, report, summarize, verdicts


async def _serve_mocks(ports: list[int]) -> None:
    runners = []
    for app, port in zip(mock_apps(), ports, strict=True):
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, procs.HOST, port, backlog=4096).start()
        runners.append(runner)
    print("routing mocks listening", flush=True)
    await asyncio.Event().wait()


# -- entry points ----------------------------------------------------------------


async def measure(
    out: Path, duration_s: float, concurrency: int, strategies: tuple[str, ...] = STRATEGIES
) -> dict[str, Any]:
    """Run every strategy; write ``routing.json``, ``routing.md``, ``routing_share.png``."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before any load)
    ports = [procs.free_port() for _ in DEPLOYMENTS]
    mocks = procs.spawn(
        "routing_mocks", ["-m", "loadtest.scenarios.routing", "--serve-mocks", *map(str, ports)],
        ports[0], out,
    )  # fmt: skip
    runs: list[Run] = []
    try:
        for p in ports:
            await procs.wait_port(p)
        for strategy in strategies:
            say(f"routing: {strategy} for {duration_s:.0f}s")
            runs.append(await run_strategy(strategy, ports, out, duration_s, concurrency))
    finally:
        procs.stop(mocks)
    summary = {run.strategy: summarize(run) for run in runs}
    checks = verdicts(summary)
    result = {"duration_s": duration_s, "concurrency": concurrency,
              "strategies": summary, "verdicts": checks}  # fmt: skip
    (out / "routing.json").write_text(json.dumps(result, indent=2))
    plot(runs, out / "routing_share.png")
    (out / "routing.md").write_text(report(summary, checks))
    return result


async def bench_section(args: argparse.Namespace, mock: Any, gw: Any) -> Any:
    """``loadtest bench``'s ``routing`` section (its own mocks and gateways;
    results in ``routing/`` next to the bench's; 3 s a strategy with ``--quick``)."""
    duration = 3.0 if getattr(args, "quick", False) else 20.0
    return await measure(Path(gw.log.name).parent / "routing", duration_s=duration, concurrency=12)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("loadtest routing", __doc__)
    p.add_argument("--duration-s", type=float, default=30.0, help="seconds per strategy")
    p.add_argument("--concurrency", type=int, default=12, help="closed-loop streaming clients")
    p.add_argument("--quick", action="store_true", help="6 s per strategy (a check that it works)")
    p.add_argument("--out", type=Path, default=None, help="results directory")
    p.add_argument(
        "--serve-mocks",
        nargs=3,
        type=int,
        metavar="PORT",
        help="internal: serve the three mock deployments on these ports (the run starts them)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve_mocks:
        asyncio.run(_serve_mocks(args.serve_mocks))
        return
    out = cli.results_dir(args.out, "routing")
    duration = 6.0 if args.quick else args.duration_s
    result = asyncio.run(measure(out, duration, args.concurrency))
    for check in result["verdicts"]:
        say(f"{'met   ' if check['met'] else 'missed'} {check['target']}")
    print(f"routing report: {out / 'routing.md'}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
