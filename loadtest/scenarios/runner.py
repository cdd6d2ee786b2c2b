"""``python -m loadtest runner`` (also ``python -m loadtest`` alone): the default
end-to-end scenario, the mock upstream and the gateway under four client mixes.

Starts the mock upstream and the gateway as subprocesses, then runs:

1. ``direct``: normal readers against the mock upstream;
2. ``gateway``: the same load through the gateway (added TTFT / ITL,
   throughput ratio, relayed events per gateway CPU-second);
3. ``slow``: a client mix through the gateway (slow and stalled readers,
   mid-stream and first-token disconnects) while RSS, buffered bytes,
   backpressure waits and active streams are sampled;
4. ``backpressure``: stalled clients against the unbounded baseline relay and
   against Sluice at once.

Writes ``result.json``, ``report.md`` and PNG plots under
``loadtest/results/<timestamp>/`` and prints the report path. ``--quick``
shrinks every phase to a few seconds (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import cli, procs
from loadtest.client.driver import LoadSpec
from loadtest.client.profiles import Profile, Target
from loadtest.measure.backpressure import ProofSpec, run_proof
from loadtest.measure.phase import measured_phase, say, series
from loadtest.mock.scenario import MockScenario
from loadtest.report.common import run_meta, write_report
from loadtest.report.e2e_plots import make_plots
from loadtest.report.stats import compare, rss_trend


def slow_mix(sc: MockScenario) -> tuple[Profile, ...]:
    """The slow-phase client mix: 55% normal, 20% slow, 10% stalled, 10% + 5% disconnecting."""
    long_stream = MockScenario(ttft_ms=sc.ttft_ms, itl_ms=5, tokens=1_000_000, token_bytes=64)
    return (
        Profile("normal", "normal", 0.55),
        Profile("slow", "slow", 0.20, read_bytes_per_s=4096, read_chunk=512, rcvbuf=4096),
        Profile("stalled", "stalled", 0.10, rcvbuf=4096, scenario=long_stream),
        Profile("disconnect_mid", "disconnect_mid", 0.10, disconnect_after_tokens=(3, 30)),
        Profile(
            "disconnect_ttft",
            "disconnect_ttft",
            0.05,
            disconnect_after_s=0.2,
            scenario=MockScenario(ttft_ms=3000, itl_ms=sc.itl_ms, tokens=10),
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest`` command line (every option with its default)."""
    p = cli.parser("loadtest", __doc__)
    a = p.add_argument
    a(
        "--mode",
        choices=("closed", "open"),
        default="closed",
        help="closed: fixed concurrency, requests back to back; open: Poisson arrivals at --rate",
    )
    a("--concurrency", type=int, default=128, help="closed-loop workers (concurrent streams)")
    a("--rate", type=float, default=50.0, help="open-loop arrivals per second")
    a(
        "--duration",
        type=float,
        default=20.0,
        help="seconds new requests start in the direct and gateway phases",
    )
    a(
        "--requests",
        type=int,
        default=None,
        help="request budget per phase (None: bounded by --duration only)",
    )
    a(
        "--slow-duration",
        type=float,
        default=60.0,
        help="seconds of the slow-client phase (slow, stalled, disconnecting clients)",
    )
    a("--slow-concurrency", type=int, default=256, help="clients in the slow-client phase")
    a(
        "--bp-duration",
        type=float,
        default=20.0,
        help="seconds of the backpressure proof (baseline relay vs Sluice)",
    )
    a(
        "--bp-clients",
        type=int,
        default=16,
        help="stalled clients on each relay in the backpressure proof",
    )
    a(
        "--bp-rss-limit-mib",
        type=int,
        default=1024,
        help="stop the unbounded baseline relay once its RSS passes this many MiB",
    )
    a("--ttft-ms", type=float, default=50.0, help="mock upstream time to first token, ms")
    a("--itl-ms", type=float, default=20.0, help="mock upstream gap between tokens, ms")
    a("--tokens", type=int, default=100, help="content events (tokens) per mock stream")
    a(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="uniform jitter added to each token's deadline, +/- ms",
    )
    a(
        "--dialect",
        choices=("openai", "anthropic"),
        default="openai",
        help="API the clients speak (OpenAI Chat Completions or Anthropic Messages)",
    )
    cli.add_gateway(p)
    a("--no-gateway", action="store_true", help="direct phase only")
    a("--no-baseline", action="store_true", help="skip the backpressure proof")
    a("--quick", action="store_true", help="a few seconds per phase (smoke test)")
    cli.add_out(p, "")
    a("--seed", type=int, default=1, help="seed of the load generator's random choices")
    a(
        "--target",
        default=None,
        help="base URL of a running gateway or fleet: one closed-loop phase against it"
        " (--model must be served by a mock upstream), nothing else",
    )
    a("--model", default="mock", help="model the clients ask for with --target")
    a(
        "--fleet",
        default=None,
        help="comma-separated replica counts, e.g. 1,2,3: for each, start a fleet"
        " ( loadtest fleet: Redis, mock, replicas, nginx) and measure events/s through nginx",
    )
    a("--fleet-workers", type=int, default=1, help="--workers of each replica with --fleet")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.slow_duration, args.bp_duration = 2.0, 3.0, 2.0
        args.concurrency, args.slow_concurrency, args.bp_clients = 8, 20, 2
        args.tokens, args.itl_ms, args.ttft_ms = 20, 10.0, 20.0
    return args


@dataclass(slots=True)
class Procs:
    mock: procs.Managed
    gateway: procs.Managed | None = None


async def run(args: argparse.Namespace) -> Path:
    """Run every phase; returns the report path."""
    procs.raise_nofile(16384)
    out = cli.results_dir(args.out, "")
    sc = MockScenario(
        ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, tokens=args.tokens, jitter_ms=args.jitter_ms
    )
    result: dict[str, Any] = {
        "meta": run_meta(args, scenario=sc.full_directive()),
        "phases": {},
    }
    ps = Procs(procs.start_mock(out))
    try:
        await procs.wait_ready(ps.mock, "/_mock/records")
        if not args.no_gateway:
            ps.gateway = await _start_gateway(out, ps.mock, args, result)
        await _phases(args, sc, ps, result, out)
    finally:
        if ps.gateway is not None:
            procs.stop(ps.gateway)
        procs.stop(ps.mock)
    result["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["plots"] = make_plots(result, out)
    return write_report(result, out)


async def _start_gateway(
    out: Path, mock: procs.Managed, args: argparse.Namespace, result: dict[str, Any]
) -> procs.Managed | None:
    gw = procs.start_gateway(
        out,
        mock.port,
        downstream_buffer_bytes=args.gateway_buffer_bytes,
        anthropic=args.dialect == "anthropic",
        src=args.gateway_src,
    )
    try:
        await procs.wait_ready(gw, "/healthz")
    except RuntimeError as exc:
        procs.stop(gw)
        result["meta"]["gateway_error"] = str(exc)
        say(f"gateway unavailable: {exc}")
        return None
    return gw


async def _phases(
    args: argparse.Namespace, sc: MockScenario, ps: Procs, result: dict[str, Any], out: Path
) -> None:
    host = procs.HOST
    model = procs.OPENAI_MODEL if args.dialect == "openai" else procs.ANTHROPIC_MODEL
    normal = (Profile("normal", "normal", 1.0),)
    base = LoadSpec(
        normal,
        sc,
        args.mode,
        args.concurrency,
        args.rate,
        args.duration,
        args.requests,
        seed=args.seed,
    )
    phases = result["phases"]
    direct = Target("direct", host, ps.mock.port, "mock", args.dialect)
    phases["direct"], _ = await measured_phase(direct, base, "direct", ps.mock, ps.mock, None)
    gw = ps.gateway
    if gw is None:
        return
    metrics = f"{gw.url}/metrics"
    through = Target("gateway", host, gw.port, model, args.dialect)
    phases["gateway"], gw_samples = await measured_phase(
        through, base, "gateway", ps.mock, gw, metrics
    )
    result["comparison"] = compare(phases["direct"], phases["gateway"])
    slow = LoadSpec(
        slow_mix(sc),
        sc,
        "closed",
        args.slow_concurrency,
        args.rate,
        args.slow_duration,
        seed=args.seed,
    )
    phases["slow"], slow_samples = await measured_phase(through, slow, "slow", ps.mock, gw, metrics)
    phases["slow"]["rss_trend"] = rss_trend(slow_samples)
    phases["slow"]["samples"] = series(slow_samples)
    phases["gateway"]["samples"] = series(gw_samples)
    if not args.no_baseline:
        result["backpressure"] = await _proof(args, ps, gw, through, out)


async def _proof(
    args: argparse.Namespace, ps: Procs, gw: procs.Managed, sluice: Target, out: Path
) -> dict[str, Any]:
    bl = procs.start_baseline(out, ps.mock.url)
    try:
        await procs.wait_ready(bl, "/healthz")
        say(f"phase backpressure: {args.bp_clients} stalled clients each on baseline and Sluice")
        baseline = Target("baseline", procs.HOST, bl.port, "mock", args.dialect)
        spec = ProofSpec(args.bp_clients, args.bp_duration, args.bp_rss_limit_mib << 20)
        return await run_proof(
            spec, baseline, bl.pid, sluice, gw.pid, f"{gw.url}/metrics", lambda: procs.stop(bl, 2.0)
        )
    finally:
        procs.stop(bl)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.target or args.fleet:
        from loadtest.measure import fleet as fleet_load

        procs.raise_nofile(16384)
        fleet_load.main(args, cli.results_dir(args.out, ""))
        return
    t0 = time.monotonic()
    path = asyncio.run(run(args))
    say(f"done in {time.monotonic() - t0:.0f}s")
    print(f"report: {path}", flush=True)
