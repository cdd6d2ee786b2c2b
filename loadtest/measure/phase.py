"""One measured phase: load against a target while a process is sampled and
the mock upstream's records are joined to the client results."""

from __future__ import annotations

import os
import sys
from typing import Any

from loadtest import procs
from loadtest.client.driver import LoadSpec, run_phase
from loadtest.client.profiles import Target
from loadtest.client.sampler import ProcessSampler, Sample, fetch_records, reset_records
from loadtest.report.stats import summarize


def say(msg: str) -> None:
    """Progress to stderr (stdout carries only the report path)."""
    print(msg, file=sys.stderr, flush=True)


async def measured_phase(
    target: Target,
    spec: LoadSpec,
    label: str,
    mock: procs.Managed,
    watched: procs.Managed,
    metrics_url: str | None,
) -> tuple[dict[str, Any], list[Sample]]:
    """One phase with the watched process sampled and the mock's records joined."""
    await reset_records(mock.url)
    sampler = ProcessSampler(watched.pid, metrics_url, 0.5)
    sampler.start()
    mock_s = ProcessSampler(mock.pid, None, 1.0)
    mock_s.start()
    self_s = ProcessSampler(os.getpid(), None, 1.0)  # is the load generator the bottleneck?
    self_s.start()
    say(f"phase {label}: {spec.mode} loop, {spec.concurrency} clients, {spec.duration_s:.0f}s")
    run = await run_phase(target, spec, label, sampler.status)
    samples = await sampler.stop()
    mock_samples = await mock_s.stop()
    self_samples = await self_s.stop()
    summary = summarize(run, await fetch_records(mock.url))
    summary["process"] = cpu_figures(samples, summary["events"], watched.name)
    summary["mock_process"] = cpu_figures(mock_samples, summary["events"], "mock_upstream")
    summary["client_process"] = cpu_figures(self_samples, summary["events"], "load_generator")
    return summary, samples


def cpu_figures(samples: list[Sample], events: int, name: str) -> dict[str, Any]:
    if len(samples) < 2:
        return {"name": name}
    cpu = samples[-1].cpu_s - samples[0].cpu_s
    wall = samples[-1].t - samples[0].t
    return {
        "name": name,
        "cpu_s": cpu,
        "cpu_util": cpu / wall if wall else None,
        "events_per_cpu_s": events / cpu if cpu > 0 else None,
        "rss_max_mib": max(s.rss_bytes for s in samples) / 2**20,
    }


def series(samples: list[Sample]) -> list[dict[str, Any]]:
    return [
        {
            "t": s.t,
            "rss_bytes": s.rss_bytes,
            "write_buffer_bytes": s.write_buffer_bytes,
            "backpressure_waits": s.backpressure_waits,
            "streams_active": s.streams_active,
            "num_fds": s.num_fds,
        }
        for s in samples
    ]
