"""``python -m loadtest bench`` (``make bench``): the comparison suite, direct
against through the gateway at several loads, throughput, RSS and cancels.

Sections, each bounded in time, loopback only:

1. ``ttft_c1``: added TTFT at concurrency 1 (one-token streams, many requests).
2. ``latency``: direct vs gateway at concurrency 1, 32, 128, 512 with streams
   paced at 50 events/s: added TTFT / ITL, frames lost, gaps over 2x pace.
3. ``throughput``: an unpaced flood through the gateway: relayed events per
   CPU-second of the gateway process (psutil ``cpu_times``), and the same
   load direct: the mock upstream's own ceiling (events per CPU-second).
4. ``rss_per_stream``: gateway RSS with 1,000 and 5,000 stalled streams open
   (``RLIMIT_NOFILE`` raised first), per stream over the idle RSS.
5. ``cancel``: client disconnect -> upstream close, mid-stream and during the
   first-token wait.

Results: ``loadtest/results/bench-<timestamp>/bench.json``, ``bench.md`` and
PNG plots next to them (:mod:`loadtest.report.bench_plots`).

Targets, each with a verdict (met / missed) in ``bench.md``; reported, never
asserted:

- added TTFT at concurrency 1: p50 <= 0.5 ms, p99 <= 1 ms;
- relayed events per gateway CPU-second (unpaced streams) >= 40,000;
- no frames lost and no inter-token gap over twice the pace through the
  gateway, at every concurrency (1 to 512);
- client disconnect -> upstream connection closed: p99 <= 10 ms.

RSS per open stalled stream is reported without a target.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtest import cli, procs
from loadtest.client.driver import LoadSpec, run_phase
from loadtest.client.profiles import Profile, Target
from loadtest.client.sampler import ProcessSampler
from loadtest.measure.phase import measured_phase, say
from loadtest.mock.scenario import MockScenario
from loadtest.report.bench import write_bench
from loadtest.report.bench_plots import make_bench_plots
from loadtest.report.common import run_meta
from loadtest.report.stats import compare
from loadtest.scenarios import headofline, routing

NORMAL = (Profile("normal", "normal", 1.0),)
PACED = MockScenario(ttft_ms=20, itl_ms=20, tokens=50)  # 50 events/s, 1 s streams


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest bench`` command line (every option with its default)."""
    p = cli.parser("loadtest bench", __doc__)
    a = p.add_argument
    a(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 32, 128, 512],
        help="concurrent paced streams of each latency phase",
    )
    a(
        "--phase-s",
        type=float,
        default=8.0,
        help="seconds per latency phase, and of the throughput and cancel phases",
    )
    a("--ttft-requests", type=int, default=400, help="requests of the concurrency-1 TTFT section")
    a(
        "--streams",
        type=int,
        nargs="+",
        default=[1000, 5000],
        help="stalled streams held open in each RSS-per-stream step",
    )
    a("--hold-s", type=float, default=10.0, help="seconds to hold N open streams")
    cli.add_gateway(p)
    cli.add_out(p, "bench")
    a(
        "--skip",
        nargs="*",
        default=[],
        choices=["ttft_c1", "latency", "throughput", "rss", "cancel", "routing"],
        help="sections to leave out",
    )
    cli.add_quick(p, concurrency=[1, 8], phase_s=1.0, ttft_requests=20, streams=[50], hold_s=1.0)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    return p.parse_args(argv)


async def _pair(
    label: str, spec: LoadSpec, mock: procs.Managed, gw: procs.Managed
) -> dict[str, Any]:
    direct = Target("direct", procs.HOST, mock.port, "mock")
    through = Target("gateway", procs.HOST, gw.port, procs.OPENAI_MODEL)
    d, _ = await measured_phase(direct, spec, f"{label}-direct", mock, mock, None)
    g, _ = await measured_phase(through, spec, f"{label}-gateway", mock, gw, f"{gw.url}/metrics")
    return {
        "concurrency": spec.concurrency,
        "comparison": compare(d, g),
        "direct": _brief(d),
        "gateway": _brief(g),
    }


def _brief(ph: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "requests",
        "events",
        "events_per_s",
        "frames_expected",
        "frames_received",
        "frames_lost",
    )
    out = {k: ph[k] for k in keys}
    out["normal"] = ph["normal"]
    out["process"] = ph.get("process")
    out["mock_process"] = ph.get("mock_process")
    out["client_process"] = ph.get("client_process")
    errors: dict[str, int] = {}
    for p in ph["profiles"].values():
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    if "cancel" in ph:
        out["cancel"] = ph["cancel"]
    return out


async def bench_ttft_c1(args: argparse.Namespace, mock: procs.Managed, gw: procs.Managed) -> Any:
    sc = MockScenario(ttft_ms=2, itl_ms=1, tokens=2)
    spec = LoadSpec(NORMAL, sc, concurrency=1, duration_s=60.0, max_requests=args.ttft_requests)
    return await _pair("ttft-c1", spec, mock, gw)


async def bench_latency(args: argparse.Namespace, mock: procs.Managed, gw: procs.Managed) -> Any:
    out = []
    for c in args.concurrency:
        spec = LoadSpec(
            NORMAL, PACED, concurrency=c, duration_s=args.phase_s, ramp_s=min(1.0, c / 500)
        )
        out.append(await _pair(f"c{c}", spec, mock, gw))
    return out


async def bench_throughput(args: argparse.Namespace, mock: procs.Managed, gw: procs.Managed) -> Any:
    flood = MockScenario(ttft_ms=0, itl_ms=0, tokens=2000)
    spec = LoadSpec(NORMAL, flood, concurrency=16, duration_s=args.phase_s)
    pair = await _pair("flood", spec, mock, gw)
    return {
        "gateway_events_per_cpu_s": pair["gateway"]["process"].get("events_per_cpu_s"),
        "gateway_cpu_util": pair["gateway"]["process"].get("cpu_util"),
        "gateway_events_per_s": pair["gateway"]["events_per_s"],
        "mock_events_per_cpu_s": pair["direct"]["mock_process"].get("events_per_cpu_s"),
        "mock_cpu_util": pair["direct"]["mock_process"].get("cpu_util"),
        "mock_events_per_s_direct": pair["direct"]["events_per_s"],
        "detail": pair,
    }


async def bench_rss(args: argparse.Namespace, mock: procs.Managed, gw: procs.Managed) -> Any:
    """Hold N stalled streams open; RSS over idle, per stream."""
    slow_sc = MockScenario(ttft_ms=0, itl_ms=100, tokens=1_000_000, token_bytes=64)
    stalled = (Profile("stalled", "stalled", 1.0, rcvbuf=4096),)
    through = Target("gateway", procs.HOST, gw.port, procs.OPENAI_MODEL)
    sampler = ProcessSampler(gw.pid, f"{gw.url}/metrics", 0.5)
    sampler.start()
    await asyncio.sleep(1.5)
    idle = sampler.latest()
    out: list[dict[str, Any]] = []
    for n in args.streams:
        ramp = max(2.0, n / 500)  # the gateway's accept backlog is aiohttp's default, 128
        spec = LoadSpec(stalled, slow_sc, concurrency=n, duration_s=ramp + args.hold_s, ramp_s=ramp)
        say(f"rss: {n} stalled streams ({ramp:.0f}s ramp, {args.hold_s:.0f}s hold)")
        last = sampler.latest()
        t_start = last.t if last else 0.0
        run = await run_phase(through, spec, f"rss{n}", sampler.status)
        opened = sum(1 for r in run.results if r.error is None)
        window = [s for s in sampler.samples if s.t >= t_start + ramp + 1.0]
        if not window or idle is None:
            out.append({"streams": n, "error": "no samples"})
            continue
        rss = [s.rss_bytes for s in window]
        active = [s.streams_active for s in window if s.streams_active is not None]
        out.append(
            {
                "streams": n,
                "streams_opened": opened,
                "client_errors": dict(Counter(r.error for r in run.results if r.error)),
                "metric_scrapes": len(active),
                "streams_active_max": max(active) if active else None,
                "idle_rss_mib": idle.rss_bytes / 2**20,
                "rss_mib_first": rss[0] / 2**20,
                "rss_mib_last": rss[-1] / 2**20,
                "rss_mib_max": max(rss) / 2**20,
                # The gateway's gauge, when scraped, is the truth (admission may cap it).
                "rss_per_stream_kib": (max(rss) - idle.rss_bytes)
                / max(min(opened, max(active)) if active and max(active) > 0 else opened, 1)
                / 1024,
                "rss_drift_kib_over_hold": (rss[-1] - rss[0]) / 1024,
                "write_buffer_bytes_max": max(
                    (s.write_buffer_bytes or 0.0 for s in window), default=None
                ),
            }
        )
        await asyncio.sleep(2.0)  # let the gateway release the streams
    await sampler.stop()
    return out


async def bench_cancel(args: argparse.Namespace, mock: procs.Managed, gw: procs.Managed) -> Any:
    profiles = (
        Profile("disconnect_mid", "disconnect_mid", 0.7, disconnect_after_tokens=(2, 20)),
        Profile(
            "disconnect_ttft",
            "disconnect_ttft",
            0.3,
            disconnect_after_s=0.1,
            scenario=MockScenario(ttft_ms=2000, itl_ms=10, tokens=10),
        ),
    )
    spec = LoadSpec(
        profiles,
        MockScenario(ttft_ms=10, itl_ms=10, tokens=100),
        concurrency=32,
        duration_s=args.phase_s,
    )
    pair = await _pair("cancel", spec, mock, gw)
    return {"direct": pair["direct"].get("cancel"), "gateway": pair["gateway"].get("cancel")}


async def run(args: argparse.Namespace) -> Path:
    procs.raise_nofile(20000)
    out = cli.results_dir(args.out, "bench")
    result: dict[str, Any] = {"meta": run_meta()}
    mock = procs.start_mock(out, extra=["--backlog", "8192"])
    gw: procs.Managed | None = None
    try:
        await procs.wait_ready(mock, "/_mock/records")
        gw = procs.start_gateway(
            out, mock.port, downstream_buffer_bytes=args.gateway_buffer_bytes, src=args.gateway_src
        )
        await procs.wait_ready(gw, "/healthz")
        sections = (
            ("ttft_c1", bench_ttft_c1),
            ("latency", bench_latency),
            ("throughput", bench_throughput),
            ("rss", bench_rss),
            ("cancel", bench_cancel),
            ("routing", routing.bench_section),  # scenarios/routing.py: its own processes
        )
        for name, fn in sections:
            if name not in args.skip:
                t0 = time.monotonic()
                result[name] = await fn(args, mock, gw)
                say(f"section {name} took {time.monotonic() - t0:.0f}s")
    finally:
        if gw is not None:
            procs.stop(gw)
        procs.stop(mock)
    result["otel_cost"] = await __import__(
        "loadtest.scenarios.otel_cost"
    ).scenarios.otel_cost.bench_section(args.quick)
    result["plots"] = make_bench_plots(result, out)
    return write_bench(result, out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    path = asyncio.run(run(args))
    quick = ["--quick"] if args.quick else []
    headofline.main(["--out", str(path.parent / "headofline"), *quick])  # issue 26: large bodies
    say(f"bench done in {time.monotonic() - t0:.0f}s")
    print(f"bench report: {path}", flush=True)


if __name__ == "__main__":
    main()
