"""Several worker processes: metrics aggregate across them (multiprocess mode)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import free_port
from tests.helpers import wait_listening


async def test_two_workers_aggregate_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--workers", "2", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    n = 12
    try:
        await wait_listening(port)
        await asyncio.sleep(1.0)  # both workers listening
        body = {"model": "sim", "stream": True, "max_tokens": 2,
                "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
        connector = aiohttp.TCPConnector(force_close=True)  # new connection each time
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(n):
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=body
                ) as resp:
                    assert resp.status == 200
                    await resp.read()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        streams = sum(
            s.value
            for s in families["sluice_stream_terminations"].samples
            if s.name.endswith("_total") and s.labels["reason"] == "completed"
        )
        assert streams == n  # every worker's streams, whichever worker answered
        build = [s for s in families["sluice_build_info"].samples]
        assert len(build) == 1  # "max" mode: one series, not one per process
        active = [s.value for s in families["sluice_streams_active"].samples]
        assert active == [0.0]
        # Both workers recorded something: one counter file per process.
        counters = {p.name for p in (tmp_path / "prom").glob("counter_*.db")}
        assert len(counters) == 2, counters
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0
