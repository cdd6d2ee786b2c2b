"""One routing run per strategy (:mod:`loadtest.scenarios.routing`, whose
docstring says what is measured): three mock deployments (``fast``, ``slow``,
``flaky``: :func:`mock_apps`), a gateway on them with one routing strategy,
a closed loop of streaming clients, ``/metrics`` and ``/readyz`` sampled;
:class:`Run` holds what one run saw (every :class:`Request`, the attempts per
deployment over time, when ``flaky`` failed and its cooldown started)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from loadtest import procs
from loadtest.mock.scenario import MockScenario
from loadtest.mock.upstream import MockConfig, create_mock_app

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
