"""The backpressure proof: the same stalled clients against the unbounded
baseline relay and against Sluice, side by side, RSS sampled for both.

The upstream streams as fast as it is allowed (``itl_ms=0``) and never ends,
so every byte a relay accepts and cannot deliver stays in that relay. The
baseline is stopped early once its RSS passes ``rss_limit_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.driver import LoadSpec, run_phase
from loadtest.profiles import Profile, Target
from loadtest.sampler import ProcessSampler, Sample
from loadtest.scenario import MockScenario
from loadtest.stats import rss_trend

FLOOD = MockScenario(ttft_ms=0, itl_ms=0, tokens=50_000_000, token_bytes=512)


@dataclass(frozen=True, slots=True)
class ProofSpec:
    clients: int = 16
    duration_s: float = 20.0
    rss_limit_bytes: int = 1 << 30


def _samples_json(samples: list[Sample]) -> list[dict[str, Any]]:
    return [
        {
            "t": s.t,
            "rss_bytes": s.rss_bytes,
            "write_buffer_bytes": s.write_buffer_bytes,
            "streams_active": s.streams_active,
        }
        for s in samples
    ]


async def _watch(sampler: ProcessSampler, limit: int, stop: asyncio.Event) -> str:
    while not stop.is_set():
        s = sampler.latest()
        if s is not None and s.rss_bytes > limit:
            stop.set()
            return f"rss passed {limit / 2**20:.0f} MiB at t={s.t:.1f}s"
        await asyncio.sleep(0.2)
    return "duration elapsed"


async def run_proof(
    spec: ProofSpec,
    baseline: Target,
    baseline_pid: int,
    sluice: Target,
    sluice_pid: int,
    sluice_metrics: str | None,
    stop_baseline: Callable[[], None],
) -> dict[str, Any]:
    """Run stalled clients against both relays at once; returns RSS series and trends."""
    stalled = (Profile("stalled", "stalled", 1.0, rcvbuf=4096),)
    load = LoadSpec(stalled, FLOOD, concurrency=spec.clients, duration_s=spec.duration_s)
    base_s = ProcessSampler(baseline_pid, None, 0.25)
    sl_s = ProcessSampler(sluice_pid, sluice_metrics, 0.5)
    base_s.start()
    sl_s.start()
    stop = asyncio.Event()
    watch = asyncio.create_task(_watch(base_s, spec.rss_limit_bytes, stop))

    def status() -> str:
        b, s = base_s.latest(), sl_s.latest()
        parts = []
        if b:
            parts.append(f"baseline_rss={b.rss_bytes / 2**20:.0f}MiB")
        if s:
            parts.append(f"sluice_rss={s.rss_bytes / 2**20:.0f}MiB")
        return " ".join(parts)

    base_task = asyncio.create_task(run_phase(baseline, load, "bp-baseline", status))
    sl_task = asyncio.create_task(run_phase(sluice, load, "bp-sluice"))
    await asyncio.wait({base_task, watch}, return_when=asyncio.FIRST_COMPLETED)
    if watch.done():
        stop_baseline()  # past the bound: stop it before it takes the machine
        base_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await base_task
    else:
        stop.set()
    reason = await watch
    base_samples = await base_s.stop()
    await sl_task
    sl_samples = await sl_s.stop()
    return {
        "clients": spec.clients,
        "duration_s": spec.duration_s,
        "baseline": {
            "stopped": reason,
            "rss_trend": rss_trend(base_samples, skip_s=1.0),
            "samples": _samples_json(base_samples),
        },
        "sluice": {
            "rss_trend": rss_trend(sl_samples, skip_s=1.0),
            "samples": _samples_json(sl_samples),
        },
    }
