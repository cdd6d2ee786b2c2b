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
import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from loadtest import cli, procs
from loadtest.measure.phase import say
from loadtest.mock.scenario import MockScenario
from loadtest.mock.upstream import MockConfig, create_mock_app
from loadtest.report.common import Check, checks_table
from loadtest.report.stats import nearest_rank

STRATEGIES = ("least_busy", "latency", "weighted", "affinity")
FAST_TTFT_MS = 40.0
DEPLOYMENTS = (("fast", FAST_TTFT_MS), ("slow", 5 * FAST_TTFT_MS), ("flaky", FAST_TTFT_MS))
ITL_MS, TOKENS = 10.0, 20
COOLDOWN_S = 5.0
SESSIONS = 64
"""Distinct ``Sluice-Session`` values the clients send (the affinity strategy's keys)."""
SAMPLE_S = 0.25


# -- the mocks (a process of their own) -------------------------------------------


def mock_apps() -> list[web.Application]:
    """One mock app per deployment; ``flaky`` answers 503 once told
    ``POST /_routing/fail`` (``/_routing/heal`` undoes it)."""
    apps = []
    for name, ttft in DEPLOYMENTS:
        sc = MockScenario(ttft_ms=ttft, itl_ms=ITL_MS, tokens=TOKENS)
        app = create_mock_app(MockConfig(scenario=sc))
        if name == "flaky":
            failing = {"on": False}

            @web.middleware
            async def fail(request: web.Request, handler: Any, failing: Any = failing) -> Any:
                if failing["on"] and request.path.endswith("/chat/completions"):
                    return web.json_response({"error": {"message": "down"}}, status=503)
                return await handler(request)

            async def flip(request: web.Request, failing: Any = failing) -> web.Response:
                failing["on"] = request.path.endswith("/fail")
                return web.json_response(failing)

            app.middlewares.append(fail)
            app.router.add_post("/_routing/fail", flip)
            app.router.add_post("/_routing/heal", flip)
        apps.append(app)
    return apps


async def _serve_mocks(ports: list[int]) -> None:
    runners = []
    for app, port in zip(mock_apps(), ports, strict=True):
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, procs.HOST, port, backlog=4096).start()
        runners.append(runner)
    print("routing mocks listening", flush=True)
    await asyncio.Event().wait()


# -- one run ----------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    start: float
    ttft: float | None = None
    ok: bool = False
    error: str | None = None


@dataclass(slots=True)
class Run:
    strategy: str
    requests: list[Request] = field(default_factory=list)
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    fail_at: float | None = None
    cooldown_at: float | None = None


def gateway_toml(port: int, mock_ports: list[int], strategy: str) -> str:
    deployments = "\n".join(
        f'  {{ name = "{name}", base_url = "http://{procs.HOST}:{p}/v1" }},'
        for (name, _), p in zip(DEPLOYMENTS, mock_ports, strict=True)
    )
    return f"""# written by loadtest routing
[server]
host = "{procs.HOST}"
port = {port}
max_streams = 100000

[[models]]
name = "routed"
provider = "openai"
api_key_env = ""
upstream_model = "mock"
retries = 2
deployments = [
{deployments}
]
[models.routing]
strategy = "{strategy}"
cooldown_failures = 3
cooldown_window_s = 10
cooldown_s = {COOLDOWN_S}
"""


async def _client(
    session: aiohttp.ClientSession, url: str, run: Run, t0: float, until: float, seed: int
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        req = Request(start=time.monotonic() - t0)
        run.requests.append(req)
        body = {"model": "routed", "stream": True, "max_tokens": TOKENS,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        headers = {"Sluice-Session": f"s{rng.randrange(SESSIONS)}"}
        try:
            async with session.post(url, json=body, headers=headers) as resp:
                if resp.status != 200:
                    req.error = f"http_{resp.status}"
                    await resp.read()
                    continue
                async for line in resp.content:
                    if req.ttft is None and line.startswith(b"data: {") and b'"content"' in line:
                        req.ttft = time.monotonic() - t0 - req.start
                    if b'"error"' in line:
                        req.error = "error_event"
                    if line.startswith(b"data: [DONE]"):
                        req.ok = req.error is None
        except (aiohttp.ClientError, TimeoutError) as exc:
            req.error = type(exc).__name__
        if not req.ok and req.error is None:
            req.error = "truncated"


def attempts(exposition: str) -> dict[str, float]:
    """``sluice_deployment_requests_total`` of model ``routed``, per deployment."""
    counts = {name: 0.0 for name, _ in DEPLOYMENTS}
    for family in text_string_to_metric_families(exposition):
        if family.name != "sluice_deployment_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("model") == "routed":
                counts[sample.labels["deployment"]] = sample.value
    return counts


async def _sampler(
    session: aiohttp.ClientSession, base: str, run: Run, t0: float, until: float
) -> None:
    while time.monotonic() < until:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"{base}/metrics") as resp:
                counts = attempts(await resp.text())
            run.samples.append((time.monotonic() - t0, counts))
            if run.fail_at is not None and run.cooldown_at is None:
                async with session.get(f"{base}/readyz") as resp:
                    ready = await resp.json()
                t = time.monotonic() - t0  # seconds_left is as of (about) now
                for d in ready.get("deployments_cooling_down", []):
                    if d["deployment"] == "flaky" and d["state"] == "cooldown":
                        run.cooldown_at = t - (COOLDOWN_S - d["seconds_left"])
        await asyncio.sleep(SAMPLE_S)


async def _warm_up(session: aiohttp.ClientSession, url: str, concurrency: int) -> None:
    """Connections and first measurements, not recorded: a round of requests."""
    warm = Run("warm-up")
    until = time.monotonic() + 1.0
    await asyncio.gather(
        *(_client(session, url, warm, 0.0, until, seed=-1 - i) for i in range(concurrency))
    )


async def run_strategy(
    strategy: str, mock_ports: list[int], out: Path, duration_s: float, concurrency: int
) -> Run:
    port = procs.free_port()
    cfg = out / f"gateway-{strategy}.toml"
    cfg.write_text(gateway_toml(port, mock_ports, strategy))
    args = ["-m", "gateway", "--config", str(cfg), "--host", procs.HOST, "--port", str(port)]
    gw = procs.spawn(f"gateway-{strategy}", [*args, "--log-level", "warning"], port, out)
    run = Run(strategy)
    flaky = f"http://{procs.HOST}:{mock_ports[2]}"
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        await procs.wait_ready(gw, "/healthz")
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await (await session.post(f"{flaky}/_routing/heal")).read()
            await _warm_up(session, f"{gw.url}/v1/chat/completions", concurrency)
            await (await session.get(f"{gw.url}/readyz")).read()  # its first call too
            t0 = time.monotonic()
            until = t0 + duration_s
            url = f"{gw.url}/v1/chat/completions"
            tasks = [
                asyncio.create_task(_client(session, url, run, t0, until, seed=i))
                for i in range(concurrency)
            ]
            tasks.append(asyncio.create_task(_sampler(session, gw.url, run, t0, until)))
            await asyncio.sleep(duration_s / 2)
            await (await session.post(f"{flaky}/_routing/fail")).read()
            run.fail_at = time.monotonic() - t0
            await asyncio.gather(*tasks)
    finally:
        procs.stop(gw)
    return run


# -- figures ------------------------------------------------------------------------


def share_series(run: Run) -> tuple[list[float], dict[str, list[float]]]:
    """Per sample interval: each deployment's share of the attempts in it."""
    times: list[float] = []
    shares: dict[str, list[float]] = {name: [] for name, _ in DEPLOYMENTS}
    for (_, before), (t, after) in zip(run.samples, run.samples[1:], strict=False):
        delta = {k: after[k] - before[k] for k in after}
        total = sum(delta.values())
        if total <= 0:
            continue
        times.append(t)
        for k, v in delta.items():
            shares[k].append(v / total)
    return times, shares


def summarize(run: Run) -> dict[str, Any]:
    ttfts = [r.ttft if r.ok and r.ttft is not None else math.inf for r in run.requests]
    failed = [r for r in run.requests if not r.ok]
    after = [r for r in run.requests if run.cooldown_at is not None and r.start >= run.cooldown_at]
    first, last = (run.samples[0][1], run.samples[-1][1]) if run.samples else ({}, {})
    trials = None
    if run.cooldown_at is not None:
        at = [c for t, c in run.samples if t <= run.cooldown_at]
        trials = last.get("flaky", 0.0) - (at[-1] if at else first).get("flaky", 0.0)
    total = {k: last.get(k, 0.0) - first.get(k, 0.0) for k in last}
    return {
        "requests": len(run.requests),
        "failed": len(failed),
        "failed_by": {e: sum(1 for r in failed if r.error == e) for e in {r.error for r in failed}},
        "ttft_p50_ms": _ms(nearest_rank(ttfts, 0.5)),
        "ttft_p99_ms": _ms(nearest_rank(ttfts, 0.99)),
        "attempts_share": {
            k: round(v / max(1.0, sum(total.values())), 3) for k, v in total.items()
        },
        "fail_at_s": run.fail_at,
        "cooldown_at_s": None if run.cooldown_at is None else round(run.cooldown_at, 3),
        "requests_after_cooldown": len(after),
        "failed_after_cooldown": sum(1 for r in after if not r.ok),
        "flaky_attempts_after_cooldown": trials,
    }


def _ms(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else round(v * 1000, 2)


def verdicts(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The two targets as :class:`~loadtest.report.common.Check` (JSON form:
    ``met``, ``verdict``, ``why``, ``failed``...); never met when a request
    failed. The weighted strategy is the latency strategy's floor here: same
    mocks, same load, same machine, so a busy machine slows both."""
    out: list[Check] = []
    lat, wrr = summary.get("latency"), summary.get("weighted")
    if lat is not None and wrr is not None:
        a, b = lat["ttft_p99_ms"], wrr["ttft_p99_ms"]
        measured = f"{_or_na(a)} vs {_or_na(b)} ms; failed {lat['failed']} / {wrr['failed']}"
        ok = a is not None and b is not None and a < b
        why = "a p99 is missing (a failed request's TTFT is infinite)"
        if a is not None and b is not None:
            why = f"latency's p99 {a:g} ms {'under' if ok else 'not under'} weighted's {b:g} ms"
        out.append(Check("latency beats weighted on client TTFT p99 (latency / weighted)",
                         "lower p99, no request failed", measured, ok, why,
                         lat["failed"] + wrr["failed"]))  # fmt: skip
    if lat is not None:
        seen = lat["cooldown_at_s"] is not None
        after, failed = lat["requests_after_cooldown"], lat["failed_after_cooldown"]
        why = "" if seen and after > 0 else "no cooldown seen, or no request after it"
        out.append(Check("latency loses no request after flaky's cooldown starts",
                         "0 failed after the cooldown", f"{failed} of {after} failed",
                         seen and after > 0, why, failed))  # fmt: skip
    return [c.as_json() for c in out]


def _or_na(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtest.report import plotstyle
    from loadtest.report.plotstyle import legend_below

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        times, shares = share_series(run)
        ax.stackplot(times, *shares.values(), labels=list(shares), alpha=0.85)
        for at, label, style in ((run.fail_at, "flaky fails", "--"),
                                 (run.cooldown_at, "cooldown starts", ":")):  # fmt: skip
            if at is not None:
                ax.axvline(at, color="black", linestyle=style, linewidth=1, label=label)
        ax.set_title(f"{run.strategy}: share of attempts per deployment", fontsize="medium")
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.set_ylabel("share")
        ax.set_xlabel("seconds")
    legend_below(axes[-1, 0])
    plotstyle.save(fig, path)


def report(summary: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    lines = ["# Routing across deployments", "",
             f"fast TTFT {FAST_TTFT_MS:.0f} ms, slow {5 * FAST_TTFT_MS:.0f} ms, flaky fails "
             "(503) from half way; retries = 2; cooldown 3 failures in 10 s, 5 s", "",
             "| strategy | requests | failed | TTFT p50 ms | TTFT p99 ms | share fast/slow/flaky "
             "| failed after cooldown | flaky attempts after cooldown |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in summary.items():
        share = "/".join(f"{s['attempts_share'].get(n, 0):.2f}" for n, _ in DEPLOYMENTS)
        lines.append(
            f"| {name} | {s['requests']} | {s['failed']} | {_or_na(s['ttft_p50_ms'])} | "
            f"{_or_na(s['ttft_p99_ms'])} | {share} | {s['failed_after_cooldown']} | "
            f"{s['flaky_attempts_after_cooldown']} |"
        )
    lines += ["", *checks_table([Check.from_json(c) for c in checks])]
    return "\n".join(lines) + "\n\n![share](routing_share.png)\n"


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
