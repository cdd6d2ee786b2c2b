"""Graceful shutdown of the real process: SIGTERM with streams open."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from loadtest.procs import free_port
from tests.helpers import wait_listening
from tests.rawclient import RawSSEClient

CONFIG = """
[server]
shutdown_grace_s = 1.5
[[models]]
name = "short"
provider = "sim"
ttft_ms = 10
itl_ms = 40
output_tokens = 20
[[models]]
name = "long"
provider = "sim"
ttft_ms = 10
itl_ms = 40
output_tokens = 1000
"""


async def _start(tmp_path: Path, config_text: str) -> tuple[int, asyncio.subprocess.Process]:
    """The gateway as a process on a free port; stdout and stderr on one pipe."""
    config = tmp_path / "sluice.toml"
    config.write_text(config_text)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return port, proc


def _body(model: str) -> dict[str, object]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}


async def test_sigterm_drains_then_ends_long_streams_and_exits_0(tmp_path: Path) -> None:
    port, proc = await _start(tmp_path, CONFIG)
    try:
        await wait_listening(port)
        short = await RawSSEClient.open("127.0.0.1", port, "/v1/chat/completions", _body("short"))
        long = await RawSSEClient.open("127.0.0.1", port, "/v1/chat/completions", _body("long"))
        assert (short.status, long.status) == (200, 200)
        await short.events(limit=2)
        await long.events(limit=2)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        refused = False
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
        except OSError:
            refused = True
        assert refused, "new connections must be refused while draining"
        async with asyncio.timeout(10):
            short_rest = await short.events()
            long_rest = await long.events()
            code = await proc.wait()
        short.close()
        long.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert short_rest[-1] == b"data: [DONE]"  # finished within the grace period
    assert b'"code":"shutting_down"' in long_rest[-1]  # ended by the shutdown
    assert b"data: [DONE]" not in b"".join(long_rest)
    assert code == 0
    assert proc.stdout is not None
    log = (await proc.stdout.read()).decode()
    assert '"outcome":"shutdown"' in log


async def test_drain_delay_turns_readyz_503_and_serves_until_the_listener_closes(
    tmp_path: Path,
) -> None:
    delayed = CONFIG.replace("shutdown_grace_s = 1.5", "shutdown_grace_s = 5\ndrain_delay_s = 2")
    port, proc = await _start(tmp_path, delayed)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_listening(port)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as r:
                assert r.status == 200
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):  # not ready at once ...
                while True:
                    async with session.get(f"{base}/readyz") as r:
                        if r.status == 503:
                            assert (await r.json())["status"] == "draining"
                            break
                    await asyncio.sleep(0.02)
            # ... while a new request is still served whole ...
            async with session.post(f"{base}/v1/chat/completions", json=_body("short")) as r:
                assert r.status == 200
                assert (await r.read()).endswith(b"data: [DONE]\n\n")
        # ... until the delay is over: then the listener closes and it exits 0.
        async with asyncio.timeout(15):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert proc.stdout is not None
    log = (await proc.stdout.read()).decode()
    assert '"event":"leaving"' in log and '"event":"drained"' in log
