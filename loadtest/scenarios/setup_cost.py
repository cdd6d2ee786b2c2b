"""``python -m loadtest setup_cost``: the gateway's CPU per request and per
event, as its own CPU time (not wall clock).

Measured as the gateway process's ``/proc/<pid>/stat`` utime + stime, so other
work on a shared machine barely moves it.

One mock upstream (:mod:`loadtest.mock.upstream`; TTFT and gaps
``--itl-ms``, 0 by default) and one gateway
(``python -m gateway``, as :mod:`loadtest.scenarios.hotpath` configures it; ``--gateway-src
DIR`` for another checkout's; ``--floor`` for the floor relay,
:mod:`loadtest.relays.floor`). The client sends ``--requests`` streaming
requests one after another (``--concurrency`` at a time) for a stream of
``--short`` events, then as many of ``--long`` events. CPU per request at
``--short`` events is mostly setup and teardown; the difference between the
two, per event, is the relay's cost per event. Each stream's TTFT (wall
clock: the machine's other work shows in it) is reported as p50 and p99.
``--gc`` logs every collection in the gateway (generation, CPU) and the
event loop's lag (a 2 ms tick), and says how many lags a collection
explains; ``--profile FILE`` runs the gateway under cProfile
(its figures are then inflated; read the shares).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from loadtest import cli, procs
from loadtest.client.sampler import cpu_seconds


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of process ``pid`` (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _one(session: aiohttp.ClientSession, url: str, events: int, itl_ms: float = 0) -> float:
    """One stream; returns its TTFT (s: request sent -> first ``data:`` line)."""
    pace = f"ttft_ms={itl_ms} itl_ms={itl_ms}"
    body = {
        "model": procs.OPENAI_MODEL,
        "stream": True,
        "max_tokens": events,
        "messages": [{"role": "user", "content": f"[mock tokens={events} {pace}]"}],
    }
    first = 0.0
    start = time.perf_counter()
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not first and line.startswith(b"data: "):
                first = time.perf_counter() - start
    return first


async def _batch(
    url: str, events: int, requests: int, concurrency: int, pid: int, itl_ms: float = 0
) -> tuple[float, list[float]]:
    """Gateway CPU seconds per request over ``requests`` streams of ``events``,
    and each stream's TTFT (s; wall clock, so the machine's other work shows)."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(20):  # warm-up: connections, caches, first-use imports
            await _one(session, url, events)
        todo = iter(range(requests))
        ttfts: list[float] = []

        async def worker() -> None:
            for _ in todo:
                ttfts.append(await _one(session, url, events, itl_ms))

        before = cpu_seconds(pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (cpu_seconds(pid) - before) / requests, ttfts


_GC_HOOK = """\
# Written by loadtest setup_cost --gc: one line per collection of the
# process that imports it: generation, wall ms, thread CPU ms, monotonic end (s);
# and in <log>.lag the event loop's lags over 2 ms: when due (monotonic s), ms late,
# ms of the loop's CPU since the tick before (near lag + 2: busy; far below: descheduled).
import atexit, gc, os, time
_path, _t, _rows = os.environ["SETUP_COST_GC_LOG"], [0.0, 0.0], []
def _cb(phase, info):
    if phase == "start":
        _t[:] = [time.perf_counter(), time.thread_time()]
    else:
        wall, cpu = time.perf_counter() - _t[0], time.thread_time() - _t[1]
        _rows.append((info["generation"], wall, cpu, time.monotonic()))
gc.callbacks.append(_cb)
# The event loop's lag: a callback due every 2 ms notes how late it ran.
import aiohttp.web
_lags, _run_app = [], aiohttp.web.run_app
def _tick(loop, due, cpu):
    now, cpu_now = time.monotonic(), time.thread_time()
    if now - due > 0.002:  # with the loop's CPU since the last tick (busy, or descheduled)
        _lags.append((due, now - due, cpu_now - cpu))
    loop.call_later(0.002, _tick, loop, now + 0.002, cpu_now)
def _run(app, *, loop, **options):
    loop.call_soon(_tick, loop, time.monotonic(), time.thread_time())
    return _run_app(app, loop=loop, **options)
aiohttp.web.run_app = _run
@atexit.register
def _dump():
    with open(_path, "w") as f:
        f.writelines(f"{g} {w * 1e3:.3f} {c * 1e3:.3f} {t:.6f}\\n" for g, w, c, t in _rows)
    with open(_path + ".lag", "w") as f:
        f.writelines(f"{due:.6f} {lag * 1e3:.3f} {cpu * 1e3:.3f}\\n" for due, lag, cpu in _lags)
"""


def _lag_summary(path: Path, since: float) -> str:
    """The loop's lags over 5 and 20 ms after ``since``: how many a garbage
    collection ended in, and in how many the loop itself ran (its thread's
    CPU) for at least half the time, rather than waiting for a core
    (:data:`_GC_HOOK`'s records)."""
    gcs = [line.split() for line in path.read_text().splitlines()]
    ends = sorted(float(r[3]) for r in gcs)
    lags = [
        tuple(map(float, line.split())) for line in Path(f"{path}.lag").read_text().splitlines()
    ]
    out = []
    for bound in (5.0, 20.0):
        late = [(due, lag, cpu) for due, lag, cpu in lags if due >= since and lag > bound]
        by_gc = sum(1 for due, lag, _ in late if any(due <= end <= due + lag / 1e3 for end in ends))
        busy = sum(1 for _, lag, cpu in late if cpu >= 0.5 * (lag + 2.0))
        worst = max((lag for _, lag, _ in late), default=0.0)
        out.append(
            f"over {bound:.0f} ms: {len(late)} (a collection in {by_gc}; the loop running for "
            f"half of it or more, not waiting for a core, in {busy}), max {worst:.1f} ms"
        )
    return "; ".join(out)


def _gc_summary(path: Path, since: float) -> str:
    """Collections that ended after ``since`` (``time.monotonic()``, the
    first measured request: those while serving): count, CPU total and
    max per generation."""
    rows = [line.split() for line in path.read_text().splitlines()]
    rows = [r for r in rows if float(r[3]) >= since]
    out = []
    for gen in "012":
        cpu = sorted(float(r[2]) for r in rows if r[0] == gen)
        total, worst = sum(cpu), (cpu[-1] if cpu else 0.0)
        out.append(f"gen{gen}: {len(cpu)} collections, {total:.0f} ms CPU, max {worst:.2f} ms")
    return "; ".join(out)


def _start_gateway(
    args: argparse.Namespace, out: Path, mock_port: int, gc_log: Path
) -> procs.Managed:
    """The gateway on the mock (under cProfile with ``--profile``; its GC logged with ``--gc``)."""
    port = procs.free_port()
    cfg = out / "gateway.toml"
    procs.write_gateway_config(cfg, mock_port, port, 65536, 300.0, False, "")
    cmd = ["-m", "gateway", "--config", str(cfg), "--host", procs.HOST, "--port", str(port)]
    if args.profile:
        cmd = ["-m", "cProfile", "-o", args.profile, *cmd]
    src = args.gateway_src or procs.REPO_ROOT
    env = {**os.environ, procs.API_KEY_ENV: "loadtest-key", "PYTHONPATH": str(src)}
    if args.gc:
        (out / "gchook").mkdir(exist_ok=True)
        (out / "gchook" / "sitecustomize.py").write_text(_GC_HOOK)
        env["PYTHONPATH"] += os.pathsep + str(out / "gchook")
        env["SETUP_COST_GC_LOG"] = str(gc_log)
    log = (out / "gateway.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, *cmd, "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=src,
    )  # fmt: skip
    return procs.Managed("gateway", proc, port, log)


async def run(args: argparse.Namespace, out: Path) -> None:
    mock = procs.start_mock(out, extra=["--ttft-ms", "0", "--itl-ms", "0"])
    gw: procs.Managed | None = None
    gc_log = out / "gc.log"
    since = float("inf")
    try:
        await procs.wait_ready(mock, "/_mock/records")
        if args.floor:
            gw = procs.start_floor(out, mock.url)
        else:
            gw = _start_gateway(args, out, mock.port, gc_log)
        await procs.wait_ready(gw, "/healthz")
        url = gw.url + "/v1/chat/completions"
        pid = gw.proc.pid
        since = time.monotonic()
        for rep in range(args.reps):
            short, ttft_short = await _batch(
                url, args.short, args.requests, args.concurrency, pid, args.itl_ms
            )
            long, ttft_long = await _batch(
                url, args.long, args.requests, args.concurrency, pid, args.itl_ms
            )
            per_event = (long - short) / (args.long - args.short)
            ttft = sorted(ttft_short + ttft_long)
            p50, p99 = ttft[len(ttft) // 2], ttft[int(len(ttft) * 0.99)]
            print(
                f"rep {rep}: {short * 1e6:.0f} us CPU per {args.short}-event request, "
                f"{long * 1e6:.0f} us per {args.long}-event request, "
                f"{per_event * 1e6:.2f} us per event; "
                f"TTFT p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (wall clock)",
                flush=True,
            )
        print(f"gateway peak RSS: {peak_rss_mib(pid):.0f} MiB", flush=True)
    finally:
        if gw is not None:
            procs.stop(gw, timeout_s=30)
        procs.stop(mock)
    if args.gc and gc_log.exists():
        print("collections while serving (after start-up):", _gc_summary(gc_log, since))
        print("event-loop lag while serving (2 ms ticks):", _lag_summary(gc_log, since))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest setup_cost`` command line."""
    p = cli.parser("loadtest setup_cost", __doc__)
    p.add_argument("--requests", type=int, default=2000, help="requests per batch")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    p.add_argument("--short", type=int, default=1, help="events per request, short batch")
    p.add_argument("--long", type=int, default=101, help="events per request, long batch")
    p.add_argument("--itl-ms", type=float, default=0.0, help="the mock's TTFT and gap (ms)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of both batches")
    cli.add_gateway(p, buffer=False)
    p.add_argument("--floor", action="store_true", help="measure the floor relay instead")
    p.add_argument("--profile", help="write the gateway's cProfile stats to this file")
    p.add_argument("--gc", action="store_true", help="log the gateway's GC collections")
    p.add_argument("--out", help="directory for the processes' logs")
    cli.add_quick(p, requests=100, reps=1)
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.long <= args.short:  # the per-event figure is their difference
        p.error(f"--long ({args.long}) must be more than --short ({args.short})")
    out = Path(args.out or f"/tmp/setup_cost-{os.getpid()}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile = str(Path(args.profile).resolve())
    asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
