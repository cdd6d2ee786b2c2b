"""What client keys and per-key limits cost per request, in one run.

Four gateway processes on loopback, the same simulator model (no pacing, one
output token, non-streaming requests), differing only in ``[auth]`` /
``[state]``:

- ``off``: no keys (the gateway open on loopback, as ``make run``);
- ``auth``: one key without limits (hash + compare, no counters);
- ``limits, memory``: a key with every limit (requests and tokens per minute,
  concurrent requests, a budget), counters in the process;
- ``limits, redis``: the same key, counters in a local ``redis-server``
  (started here on a free loopback port; skipped if it is not installed).

Each round sends every gateway the same requests, in turn: ``--sequential``
one at a time (latency, p50 and p99) and ``--concurrent`` with 16 in flight
(gateway CPU per request, from psutil, and Redis's own CPU per request).
The best of ``--rounds`` is printed, with the difference from ``off``.
Limits are set far above what the run spends, so every request is admitted.

Usage: ``python -m loadtest auth_overhead [--sequential 500] [--concurrent 2000]
[--rounds 3]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from loadtest import cli
from loadtest.client.sampler import cpu_seconds
from loadtest.procs import free_port, wait_port
from loadtest.procs.fleet import redis_command

SECRET = "sk-sluice-bench-not-a-secret"
MODEL = """
[[models]]
name = "sim"
provider = "sim"
ttft_ms = 0
itl_ms = 0
output_tokens = 1
"""
KEY = f"""
[[auth.keys]]
name = "bench"
sha256 = "{hashlib.sha256(SECRET.encode()).hexdigest()}"
"""
LIMITS = """requests_per_minute = 100000000
tokens_per_minute = 1000000000
max_concurrent_streams = 10000
token_budget = 1000000000000
"""
BODY = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@dataclass
class Variant:
    name: str
    config: str
    keyed: bool
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    p50_ms: float = float("inf")
    p99_ms: float = float("inf")
    cpu_us: float = float("inf")
    redis_cpu_us: float = 0.0
    rps: float = 0.0


def variants(redis_url: str | None) -> list[Variant]:
    out = [
        Variant("off", MODEL, keyed=False),
        Variant("auth", MODEL + KEY, keyed=True),
        Variant("limits, memory", MODEL + KEY + LIMITS, keyed=True),
    ]
    if redis_url is not None:
        state = f'[state]\nredis_url = "{redis_url}"\n'
        out.append(Variant("limits, redis", MODEL + state + KEY + LIMITS, keyed=True))
    return out


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.post(url, json=BODY, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise SystemExit(f"unexpected {resp.status} from {url}: {await resp.text()}")
    return time.perf_counter() - started


async def one_round(v: Variant, sequential: int, concurrent: int, redis_pid: int | None) -> None:
    assert v.proc is not None
    url = f"http://127.0.0.1:{v.port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {SECRET}"} if v.keyed else {}
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm: connections, first-use caches, Lua scripts loaded
            await _post(session, url, headers)
        times = [await _post(session, url, headers) for _ in range(sequential)]
        cpu0 = cpu_seconds(v.proc.pid)
        redis0 = cpu_seconds(redis_pid) if redis_pid and "redis" in v.name else 0.0
        started = time.perf_counter()
        queue = iter(range(concurrent))

        async def worker() -> None:
            for _ in queue:
                await _post(session, url, headers)

        await asyncio.gather(*(worker() for _ in range(16)))
        wall = time.perf_counter() - started
        cpu = cpu_seconds(v.proc.pid) - cpu0
        redis_cpu = (cpu_seconds(redis_pid) - redis0) if redis_pid and "redis" in v.name else 0.0
    times.sort()
    v.p50_ms = min(v.p50_ms, statistics.median(times) * 1000)
    v.p99_ms = min(v.p99_ms, times[int(len(times) * 0.99) - 1] * 1000)
    if cpu / concurrent * 1e6 < v.cpu_us:
        v.cpu_us = cpu / concurrent * 1e6
        v.redis_cpu_us = redis_cpu / concurrent * 1e6
        v.rps = concurrent / wall


def spawn_gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port),
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    try:
        command = redis_command(port := free_port(), workdir)
    except FileNotFoundError:
        print("redis-server not installed (`make redis`): skipping the Redis variant")
        return None
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"redis://127.0.0.1:{port}/0"


async def main_async(sequential: int, concurrent: int, rounds: int) -> list[Variant]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = start_redis(workdir)
        all_variants = variants(redis[1] if redis else None)
        try:
            if redis is not None:
                await wait_port(int(redis[1].rsplit(":", 1)[1].split("/")[0]))
            for i, v in enumerate(all_variants):
                config = workdir / f"gw{i}.toml"
                config.write_text(v.config)
                v.port = free_port()
                v.proc = spawn_gateway(config, v.port)
            for v in all_variants:
                await wait_port(v.port)
            for r in range(rounds):
                for v in all_variants:
                    await one_round(v, sequential, concurrent, redis[0].pid if redis else None)
                print(f"round {r + 1}/{rounds} done", flush=True)
        finally:
            for v in all_variants:
                if v.proc is not None:
                    v.proc.terminate()
                    v.proc.wait(timeout=30)
            if redis is not None:
                redis[0].terminate()
                redis[0].wait(timeout=10)
    return all_variants


def report(vs: list[Variant], sequential: int, concurrent: int, rounds: int) -> str:
    base = vs[0]
    lines = [
        f"Client keys and limits, per non-streaming request (best of {rounds} rounds; "
        f"{sequential} sequential for latency, {concurrent} with 16 in flight for CPU):",
        "",
        "| variant | p50 ms | p99 ms | gateway CPU µs/req | Δ vs off | Redis CPU µs/req | req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in vs:
        delta = "" if v is base else f"{v.cpu_us - base.cpu_us:+.0f} µs"
        redis = f"{v.redis_cpu_us:.0f}" if "redis" in v.name else ""
        lines.append(
            f"| {v.name} | {v.p50_ms:.3f} | {v.p99_ms:.3f} | {v.cpu_us:.0f} | {delta} | "
            f"{redis} | {v.rps:.0f} |"
        )
    lines.append("")
    for v in vs[1:]:
        lines.append(f"{v.name}: p50 latency {v.p50_ms - base.p50_ms:+.3f} ms vs off")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest auth_overhead`` command line."""
    p = cli.parser("loadtest auth_overhead", __doc__)
    p.add_argument(
        "--sequential",
        type=int,
        default=500,
        help="requests sent one at a time per gateway per round: latency",
    )
    p.add_argument(
        "--concurrent",
        type=int,
        default=2000,
        help="requests sent 16 in flight per gateway per round: CPU per request",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds; the best one is printed",
    )
    cli.add_quick(p, sequential=20, concurrent=40, rounds=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    vs = asyncio.run(main_async(args.sequential, args.concurrent, args.rounds))
    print(report(vs, args.sequential, args.concurrent, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
