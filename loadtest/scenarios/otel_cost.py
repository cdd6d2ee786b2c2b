"""What OpenTelemetry costs per request, on and off (issue 25; ``make bench``).

In one process: the gateway (``create_app``, the simulator model: no pacing,
``--tokens`` output tokens, streamed) on a loopback port and an aiohttp client
that sends ``--requests`` streamed requests one at a time, three ways:

- ``off``: ``[otel]`` absent (the default);
- ``on``: ``[otel] enabled``, traces and metrics exported over OTLP/HTTP
  (the SDK's batching span processor and periodic metric reader, every
  second) to a null receiver in a child process (it answers 200 and
  decodes nothing, so its CPU is not counted; the defaults otherwise:
  no Prometheus copy, no per-chunk metric), every request sampled (the
  SDK's default, ``parentbased_always_on``); and the same with only
  traces, and with only metrics;
- the hooks alone, off: what each request pays for the OpenTelemetry hooks
  when telemetry is off (``begin_request``, ``track_attempts``,
  ``stream_finished``, ``upstream_headers``: context-variable reads), timed
  in a loop.

The figure is the process's CPU time (``time.process_time``: every thread,
the exporters' included) per request, client included; the client's share
is the same in both runs, so ``on - off`` is what telemetry adds. Best of
``--rounds``, printed as one line each.

Usage: ``python -m loadtest otel_cost [--requests 2000] [--rounds 3] [--tokens 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.log import configure_logging
from gateway.metrics import Metrics
from gateway.otel import hooks
from loadtest import cli
from loadtest.procs import free_port, wait_port

HOST = "127.0.0.1"


async def _serve_null(port: int) -> None:
    """The null OTLP/HTTP receiver (run in a child process)."""

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/traces", ok)
    app.router.add_post("/v1/metrics", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    await asyncio.Event().wait()


async def _cpu_per_request(otel: dict[str, Any], requests: int, tokens: int) -> float:
    """CPU µs per streamed request through a gateway with ``[otel]`` = ``otel``;
    the gateway's clean-up (the exporters' last flush) is counted."""
    sim = {"name": "sim", "provider": "sim", "ttft_ms": 0, "itl_ms": 0, "output_tokens": tokens}
    settings = parse_settings({"models": [sim], "otel": otel})
    runner = web.AppRunner(create_app(settings, Metrics.create()), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port).start()
    url = f"http://{HOST}:{port}/v1/chat/completions"
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status

            for _ in range(min(200, requests)):  # warm-up
                await one()
            cpu0 = time.process_time()
            for _ in range(requests):
                await one()
    finally:
        await runner.cleanup()
    return (time.process_time() - cpu0) / requests * 1e6


def _hooks_off_ns(n: int = 200_000) -> float:
    """ns per request for the four hooks with telemetry off."""
    app = web.Application()
    request: Any = type("R", (), {"app": app})()

    async def attempt(target: Any) -> None:
        return None

    headers = {"a": "b"}
    t0 = time.perf_counter()
    for _ in range(n):
        hooks.begin_request(request)
        hooks.track_attempts(attempt)
        hooks.stream_finished(None)  # type: ignore[arg-type]
        hooks.upstream_headers(headers)
    return (time.perf_counter() - t0) / n * 1e9


async def measure(requests: int = 2000, rounds: int = 3, tokens: int = 16) -> dict[str, float]:
    """Best-of-``rounds`` CPU µs per request off and on, and the hooks' ns off."""
    configure_logging("warning")  # a summary line per request would dwarf the rest
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest.scenarios.otel_cost", "--null-receiver", str(port)
    )
    try:
        await wait_port(port)
        on = {
            "enabled": True,
            "endpoint": f"http://{HOST}:{port}",
            "metric_export_interval_s": 1.0,
        }
        runs: dict[str, dict[str, Any]] = {
            "off": {},
            "on": on,
            "traces_only": {**on, "metrics": False},
            "metrics_only": {**on, "traces": False},
        }
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, otel in runs.items():
                us = await _cpu_per_request(otel, requests, tokens)
                best[name] = min(us, best.get(name, us))
    finally:
        receiver.terminate()
        await receiver.wait()
    result = {f"{name}_us": round(us, 1) for name, us in best.items()}
    result["added_us"] = round(best["on"] - best["off"], 1)
    result["hooks_off_ns"] = round(min(_hooks_off_ns() for _ in range(rounds)), 1)
    return result


def report(result: dict[str, float]) -> str:
    """The one-line summary ``make bench`` prints."""
    return (
        f"otel cost per streamed request (CPU, client included): off {result['off_us']} µs, "
        f"on {result['on_us']} µs (+{result['added_us']} µs; traces only "
        f"{result['traces_only_us']}, metrics only {result['metrics_only_us']}); "
        f"the hooks when off {result['hooks_off_ns']} ns"
    )


async def bench_section(quick: bool = False) -> dict[str, float]:
    """``make bench``'s OpenTelemetry line (about 15 s; 2 s ``quick``):
    measured, printed, returned."""
    result = await measure(requests=50 if quick else 500, rounds=1 if quick else 2)
    print(report(result), flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("loadtest otel_cost", __doc__)
    p.add_argument("--requests", type=int, default=2000, help="measured requests per run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each; the best is kept")
    p.add_argument("--tokens", type=int, default=16, help="output tokens per stream")
    p.add_argument(
        "--null-receiver",
        type=int,
        default=None,
        metavar="PORT",
        help="internal: serve a null OTLP/HTTP receiver on PORT (the run starts one)",
    )
    cli.add_quick(p, requests=50, rounds=1)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.null_receiver is not None:
        asyncio.run(_serve_null(args.null_receiver))
        return
    print(report(asyncio.run(measure(args.requests, args.rounds, args.tokens))), flush=True)


if __name__ == "__main__":
    main()
