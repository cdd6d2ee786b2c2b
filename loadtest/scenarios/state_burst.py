"""A burst of limited requests against Redis-backed quotas (issue 20, row 5).

One gateway process, counters in a local ``redis-server``, a key with every
limit (far above what the run spends); ``N`` non-streaming requests (one-token
simulator) sent all at once, each on its own connection, for each ``N`` of
``--bursts``, ``--rounds`` times. Printed per burst: statuses, and requests
per second (``N`` / time from the first request sent to the last answer).
Run it with the pool's defaults and with a small pool (``--max-connections``)
to see a burst wait for connections instead of failing.

Usage: ``python -m loadtest state_burst [--bursts 300 1000] [--rounds 3]
[--max-connections 100] [--pool-timeout-s 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path

import aiohttp

from loadtest import cli
from loadtest.procs import free_port, wait_port
from loadtest.scenarios.auth_overhead import (
    BODY,
    KEY,
    LIMITS,
    MODEL,
    SECRET,
    spawn_gateway,
    start_redis,
)


async def burst(url: str, n: int) -> tuple[collections.Counter[str], float]:
    headers = {"Authorization": f"Bearer {SECRET}"}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> str:
            async with session.post(url, json=BODY, headers=headers) as resp:
                body = await resp.json(content_type=None)
                if resp.status == 200:
                    return "200"
                return f"{resp.status} {body['error']['code']}"

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        wall = time.perf_counter() - started
    counts: collections.Counter[str] = collections.Counter(
        s if isinstance(s, str) else type(s).__name__ for s in statuses
    )
    return counts, wall


async def main_async(
    bursts: list[int], rounds: int, max_connections: int, timeout_s: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = start_redis(workdir)
        if redis is None:
            raise SystemExit("redis-server is needed")
        gateway = None
        try:
            await wait_port(int(redis[1].rsplit(":", 1)[1].split("/")[0]))
            state = (
                f'[state]\nredis_url = "{redis[1]}"\nmax_connections = {max_connections}\n'
                f"pool_timeout_s = {timeout_s}\n"
            )
            config = workdir / "gw.toml"
            config.write_text(MODEL + "[server]\nmax_streams = 4096\n" + state + KEY + LIMITS)
            port = free_port()
            gateway = spawn_gateway(config, port)
            await wait_port(port)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            await burst(url, 20)  # warm: Lua scripts loaded, first connections
            print(f"max_connections = {max_connections}, pool_timeout_s = {timeout_s}")
            for n in bursts:
                for r in range(rounds):
                    counts, wall = await burst(url, n)
                    print(
                        f"burst {n:5d} round {r + 1}: statuses {dict(sorted(counts.items()))}, "
                        f"{wall:.2f} s, {n / wall:.0f} req/s",
                        flush=True,
                    )
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(timeout=30)
            redis[0].terminate()
            redis[0].wait(timeout=10)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest state_burst`` command line."""
    p = cli.parser("loadtest state_burst", __doc__)
    p.add_argument(
        "--bursts",
        type=int,
        nargs="+",
        default=[300, 1000],
        help="requests sent at once, one burst per value",
    )
    p.add_argument("--rounds", type=int, default=3, help="times each burst is sent")
    p.add_argument(
        "--max-connections",
        type=int,
        default=100,
        help="the gateway's [state] max_connections: Redis pool size",
    )
    p.add_argument(
        "--pool-timeout-s",
        type=float,
        default=5.0,
        help="the gateway's [state] pool_timeout_s: wait for a Redis connection",
    )
    cli.add_quick(p, bursts=[50], rounds=1)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    asyncio.run(main_async(args.bursts, args.rounds, args.max_connections, args.pool_timeout_s))


if __name__ == "__main__":
    main()
