"""Load shapes: closed loop at fixed concurrency, open loop with Poisson arrivals.

Closed loop: ``concurrency`` workers, each assigned one profile by weight
(largest remainder, so the mix is exact and constant over the phase), each
running requests back to back until the duration or request budget ends.
Open loop: arrivals at ``rate`` per second with exponential gaps, each a
task with a profile drawn by weight; at most ``max_in_flight`` at once
(arrivals beyond it are counted as ``shed``, the generator never queues).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from loadtest.client.profiles import Profile, Target, run_client
from loadtest.client.sse import StreamResult, TokenCounter
from loadtest.mock.scenario import MockScenario

_PROGRESS_EVERY_S: Final = 2.0
RunOne = Callable[[Profile, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One phase of load. ``max_requests`` (if set) bounds requests started."""

    profiles: tuple[Profile, ...]
    scenario: MockScenario
    mode: Literal["closed", "open"] = "closed"
    concurrency: int = 32
    rate: float = 50.0
    duration_s: float = 10.0
    max_requests: int | None = None
    max_in_flight: int = 10_000
    seed: int = 1
    ramp_s: float = 0.0
    """Closed loop: spread the workers' first requests over this many seconds."""


@dataclass(slots=True)
class PhaseRun:
    """Everything the clients saw in one phase."""

    target: Target
    spec: LoadSpec
    started: float
    ended: float = 0.0
    results: list[StreamResult] = field(default_factory=list)
    shed: int = 0


def assign_profiles(profiles: tuple[Profile, ...], n: int) -> list[Profile]:
    """``n`` workers split across ``profiles`` by weight (largest remainder)."""
    total = sum(p.weight for p in profiles)
    exact = [p.weight / total * n for p in profiles]
    counts = [int(x) for x in exact]
    order = sorted(range(len(profiles)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return [p for p, c in zip(profiles, counts, strict=True) for _ in range(c)]


async def run_phase(
    target: Target,
    spec: LoadSpec,
    label: str,
    status: Callable[[], str] | None = None,
) -> PhaseRun:
    """Run ``spec`` against ``target``; print progress every 2 s to stderr."""
    loop = asyncio.get_running_loop()
    run = PhaseRun(target, spec, started=loop.time())
    stop_at = run.started + spec.duration_s
    counter = TokenCounter()
    ids = itertools.count()
    budget = spec.max_requests if spec.max_requests is not None else sys.maxsize
    in_flight = [0]
    rng = random.Random(spec.seed)

    def next_id() -> str | None:
        n = next(ids)
        return f"{label}-{n}" if n < budget else None

    async def one(profile: Profile, cid: str) -> None:
        in_flight[0] += 1
        try:
            r = await run_client(target, profile, spec.scenario, cid, rng, stop_at, counter)
            run.results.append(r)
        finally:
            in_flight[0] -= 1

    printer = asyncio.create_task(_progress(label, run, in_flight, counter, stop_at, status))
    try:
        if spec.mode == "closed":
            await _closed(spec, stop_at, next_id, one)
        else:
            run.shed = await _open(spec, stop_at, next_id, one, in_flight, rng)
    finally:
        printer.cancel()
    run.ended = loop.time()
    return run


async def _closed(
    spec: LoadSpec,
    stop_at: float,
    next_id: Callable[[], str | None],
    one: RunOne,
) -> None:
    loop = asyncio.get_running_loop()

    async def worker(profile: Profile, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        while loop.time() < stop_at:
            cid = next_id()
            if cid is None:
                return
            await one(profile, cid)

    workers = assign_profiles(spec.profiles, spec.concurrency)
    step = spec.ramp_s / max(len(workers), 1)
    await asyncio.gather(*(worker(p, i * step) for i, p in enumerate(workers)))


async def _open(
    spec: LoadSpec,
    stop_at: float,
    next_id: Callable[[], str | None],
    one: RunOne,
    in_flight: list[int],
    rng: random.Random,
) -> int:
    loop = asyncio.get_running_loop()
    weights = [p.weight for p in spec.profiles]
    tasks: set[asyncio.Task[None]] = set()
    shed = 0
    next_at = loop.time()
    while True:
        next_at += rng.expovariate(spec.rate)
        if next_at >= stop_at:
            break
        await asyncio.sleep(max(next_at - loop.time(), 0.0))
        cid = next_id()
        if cid is None:
            break
        if in_flight[0] >= spec.max_in_flight:
            shed += 1
            continue
        profile = rng.choices(spec.profiles, weights)[0]
        task = asyncio.ensure_future(one(profile, cid))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return shed


async def _progress(
    label: str,
    run: PhaseRun,
    in_flight: list[int],
    counter: TokenCounter,
    stop_at: float,
    status: Callable[[], str] | None,
) -> None:
    loop = asyncio.get_running_loop()
    last_tokens, last_t = 0, loop.time()
    while True:
        await asyncio.sleep(_PROGRESS_EVERY_S)
        now = loop.time()
        rate = (counter.tokens - last_tokens) / (now - last_t)
        last_tokens, last_t = counter.tokens, now
        errors = sum(1 for r in run.results if r.error and r.disconnected_at is None)
        extra = f" {status()}" if status else ""
        left = max(stop_at - now, 0.0)
        print(
            f"  [{label}] t={now - run.started:5.1f}s left={left:4.0f}s in_flight={in_flight[0]}"
            f" done={len(run.results)} events/s={rate:,.0f} errors={errors}{extra}",
            file=sys.stderr,
            flush=True,
        )
