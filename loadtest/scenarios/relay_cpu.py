"""CPU cost of the relay per SSE event, with per-stream metrics on and off.

Runs the gateway twice as a subprocess on the built-in simulator with no
pacing (TTFT 0, ITL 0), so the gateway relays as fast as one client reads;
reads the gateway process's CPU time (user + system, psutil) around a fixed
number of streams and divides by the events relayed. The simulator's own work
(building and serialising each chunk) is in both figures; their difference is
what the metrics cost.

Usage: ``python -m loadtest relay_cpu [--streams 10] [--tokens 20000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil  # type: ignore[import-untyped]

from loadtest import cli
from loadtest.client.sampler import cpu_seconds
from loadtest.procs import free_port, wait_port

CONFIG = """
[server]
metrics_enabled = {metrics}
[[models]]
name = "flat"
provider = "sim"
ttft_ms = 0
itl_ms = 0
output_tokens = {tokens}
"""


async def measure(metrics: bool, streams: int, tokens: int) -> tuple[float, int]:
    """(CPU seconds of the gateway, events relayed) over ``streams`` streams."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sluice.toml"
        config.write_text(CONFIG.format(metrics=str(metrics).lower(), tokens=tokens))
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port),
            "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_port(port)
            gateway = psutil.Process(proc.pid)
            body = {"model": "flat", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            events = 0
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                async with session.post(url, json=body) as resp:  # warm-up
                    await resp.read()
                before = cpu_seconds(gateway)
                for _ in range(streams):
                    async with session.post(url, json=body) as resp:
                        events += (await resp.read()).count(b"\n\n")
                after = cpu_seconds(gateway)
            return after - before, events
        finally:
            proc.terminate()
            await proc.wait()


async def main_async(streams: int, tokens: int, rounds: int) -> None:
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):  # interleaved, so drift on a busy machine hits both
        for metrics in (False, True):
            cpu, events = await measure(metrics, streams, tokens)
            results[metrics].append(cpu / events * 1e6)
    off, on = min(results[False]), min(results[True])
    print(f"relay CPU per SSE event ({streams} streams x {tokens} tokens, best of {rounds}):")
    print(f"  metrics off: {off:6.2f} us/event  ({1e6 / off:,.0f} events per CPU-second)")
    print(f"  metrics on:  {on:6.2f} us/event  ({1e6 / on:,.0f} events per CPU-second)")
    print(f"  metrics cost {on - off:+.2f} us/event ({(on / off - 1) * 100:+.1f}%)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest relay_cpu`` command line (every option with its default)."""
    parser = cli.parser("loadtest relay_cpu", __doc__)
    parser.add_argument(
        "--streams", type=int, default=10, help="streams per measurement (one after another)"
    )
    parser.add_argument(
        "--tokens", type=int, default=20_000, help="events per stream (simulator, unpaced)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measurements with metrics off and on, interleaved; the best of each is shown",
    )
    cli.add_quick(parser, streams=2, tokens=2000, rounds=1)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    asyncio.run(main_async(args.streams, args.tokens, args.rounds))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
