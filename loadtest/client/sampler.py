"""Periodic samples of a process: RSS and CPU (psutil), and Sluice's /metrics.

``sluice_write_buffer_bytes`` (gauge), ``sluice_backpressure_waits_total``
(counter) and ``sluice_streams_active`` (gauge) are summed over their labels,
parsed with ``prometheus_client.parser``. A metric the target does not export
reads as ``None``; a failed scrape leaves the sample's metric fields ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import psutil  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

WATCHED: Final[dict[str, str]] = {
    "sluice_write_buffer_bytes": "write_buffer_bytes",
    "sluice_backpressure_waits_total": "backpressure_waits",
    "sluice_streams_active": "streams_active",
}


@dataclass(slots=True)
class Sample:
    """One sample; ``t`` is seconds since the sampler started."""

    t: float
    rss_bytes: int
    cpu_s: float
    num_fds: int
    write_buffer_bytes: float | None = None
    backpressure_waits: float | None = None
    streams_active: float | None = None


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each watched sample name over its labels; only names present appear."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = WATCHED.get(s.name)
            if key is not None:
                out[key] = out.get(key, 0.0) + float(s.value)
    return out


def cpu_seconds(proc: psutil.Process | int) -> float:
    """User + system CPU seconds of ``proc`` (a process or a pid) so far, not
    its children's: the one CPU reading of every load-test command."""
    t = (proc if isinstance(proc, psutil.Process) else psutil.Process(proc)).cpu_times()
    return float(t.user + t.system)


def run_queue_wait_s(pid: int) -> float | None:
    """Seconds process ``pid``'s main thread has spent runnable but waiting
    for a core (Linux ``/proc/<pid>/schedstat``, second field: the
    scheduler's ``run_delay``); None where the kernel does not keep it. On
    a machine whose cores the load generator and the mock share with the
    relay, this is the part of the relay's latency that is the machine's."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass(slots=True)
class ProcessSampler:
    """Samples ``pid`` every ``interval_s`` until stopped, and once more at
    :meth:`stop` (so a phase shorter than the interval still has a first and a
    last sample: its CPU figures are never missing); ``metrics_url`` is
    optional (scraped on the periodic samples only)."""

    pid: int
    metrics_url: str | None = None
    interval_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _proc: psutil.Process | None = None
    _t0: float = 0.0

    def start(self) -> None:
        self._proc = psutil.Process(self.pid)
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[Sample]:
        """Stop sampling (again: a no-op), take the last sample; all samples."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            last = self._sample(time.monotonic() - self._t0)
            if last is not None and (not self.samples or last.t > self.samples[-1].t):
                self.samples.append(last)
        return self.samples

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def status(self) -> str:
        """A short progress string: RSS, buffered bytes, active streams."""
        s = self.latest()
        if s is None:
            return ""
        parts = [f"rss={s.rss_bytes / 2**20:.0f}MiB"]
        if s.write_buffer_bytes is not None:
            parts.append(f"buffered={s.write_buffer_bytes / 1024:.0f}KiB")
        if s.streams_active is not None:
            parts.append(f"streams={s.streams_active:.0f}")
        return " ".join(parts)

    async def _run(self) -> None:
        assert self._proc is not None
        t0 = self._t0
        timeout = aiohttp.ClientTimeout(total=max(self.interval_s, 1.0))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                s = self._sample(time.monotonic() - t0)
                if s is None:
                    return
                if self.metrics_url:
                    await self._scrape(session, s)
                self.samples.append(s)
                await asyncio.sleep(self.interval_s)

    def _sample(self, t: float) -> Sample | None:
        assert self._proc is not None
        try:
            with self._proc.oneshot():
                return Sample(
                    t, self._proc.memory_info().rss, cpu_seconds(self._proc), self._proc.num_fds()
                )
        except psutil.Error:
            return None

    async def _scrape(self, session: aiohttp.ClientSession, s: Sample) -> None:
        assert self.metrics_url is not None
        try:
            async with session.get(self.metrics_url) as resp:
                if resp.status != 200:
                    return
                values = parse_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        for key, value in values.items():
            setattr(s, key, value)


async def fetch_records(base_url: str) -> list[dict[str, Any]]:
    """The mock upstream's ``GET /_mock/records``; [] if it cannot be reached."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(f"{base_url}/_mock/records") as resp,
        ):
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return []
    records = body.get("records", []) if isinstance(body, dict) else []
    return [r for r in records if isinstance(r, dict)]


async def reset_records(base_url: str) -> None:
    """``POST /_mock/reset``; errors are ignored (the next fetch shows them)."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(f"{base_url}/_mock/reset") as resp,
        ):
            await resp.read()
