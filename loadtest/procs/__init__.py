"""Start, probe and stop the processes a load test needs: the mock upstream,
the gateway (``python -m gateway``), the baseline relay and the floor relay, on
loopback ports.

Each runs as a subprocess of this interpreter with stdout and stderr in a log
file of the results directory; :func:`stop` sends SIGTERM, waits, then kills
that pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import aiohttp

HOST: Final = "127.0.0.1"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
API_KEY_ENV: Final = "SLUICE_LOADTEST_UPSTREAM_KEY"
OPENAI_MODEL: Final = "mock-openai"
ANTHROPIC_MODEL: Final = "mock-anthropic"


@dataclass(slots=True)
class Managed:
    """A subprocess we started, with its port and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


HARNESS_NICE: Final = 10
"""The CPU priority (``nice``) of the load generator and the mock upstream in
the benchmarks that compare relays: on a machine whose cores they share with
the relay under test, a relay that is runnable gets a core before them, so
its latency tails are its own rather than the harness's (both relays are
treated alike; 0 turns it off)."""


def deprioritise(pid: int, nice: int = HARNESS_NICE) -> int:
    """Lower process ``pid``'s CPU priority to ``nice`` (``setpriority``;
    ``pid`` 0: this process). Lowering needs no privilege. Returns the
    priority it had (for :func:`restore_priority`)."""
    before = os.getpriority(os.PRIO_PROCESS, pid)
    if nice > before:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    return before


def restore_priority(pid: int, nice: int) -> None:
    """Give process ``pid`` back priority ``nice`` where allowed (raising a
    priority needs ``CAP_SYS_NICE``; without it the lower one stays)."""
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(port: int, timeout_s: float = 30.0) -> None:
    """Until something accepts TCP connections on ``HOST:port``."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


def raise_nofile(want: int) -> int:
    """Raise this process's (and future children's) open-file soft limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def spawn(
    name: str, args: list[str], port: int, logdir: Path, env: dict[str, str] | None = None
) -> Managed:
    """``python args...`` from the repo root, its output in ``logdir/<name>.log``."""
    logdir.mkdir(parents=True, exist_ok=True)
    log = (logdir / f"{name}.log").open("ab")
    full_env = {**os.environ, **(env or {})}
    # The repo root is the working directory, so ``-m loadtest`` / ``-m gateway`` resolve;
    # a PYTHONPATH given in ``env`` comes first.
    cwd = env.get("PYTHONPATH") if env else None
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd or REPO_ROOT,
    )
    return Managed(name, proc, port, log)


def start_mock(logdir: Path, port: int | None = None, extra: list[str] | None = None) -> Managed:
    port = port or free_port()
    args = ["-m", "loadtest.mock.upstream", "--host", HOST, "--port", str(port), *(extra or [])]
    return spawn("mock_upstream", args, port, logdir)


def start_baseline(logdir: Path, upstream: str, port: int | None = None) -> Managed:
    port = port or free_port()
    args = [
        "-m",
        "loadtest.relays.baseline",
        "--host",
        HOST,
        "--port",
        str(port),
        "--upstream",
        upstream,
    ]
    return spawn("baseline_relay", args, port, logdir)


def start_floor(
    logdir: Path, upstream: str, port: int | None = None, uvloop: bool = False
) -> Managed:
    """The floor relay (:mod:`loadtest.relays.floor`) in front of ``upstream``."""
    port = port or free_port()
    args = ["-m", "loadtest.relays.floor", "--host", HOST, "--port", str(port)]
    args += ["--upstream", upstream, *(["--uvloop"] if uvloop else [])]
    return spawn("floor_relay", args, port, logdir)


def write_gateway_config(
    path: Path,
    mock_port: int,
    port: int,
    downstream_buffer_bytes: int = 65536,
    send_timeout_s: float = 300.0,
    anthropic: bool = False,
    server_extra: str = "",
) -> None:
    """A gateway TOML with ``mock-openai`` (and ``mock-anthropic``) models on the mock;
    ``server_extra``: more ``[server]`` lines (e.g. ``uvloop = false``)."""
    base = f"http://{HOST}:{mock_port}"
    path.write_text(
        f"""# written by loadtest.procs
[server]
host = "{HOST}"
port = {port}
# The load test opens thousands of streams on purpose: no admission cap.
max_streams = 100000
max_queued_bytes = 17179869184
{server_extra}
[stream]
downstream_buffer_bytes = {downstream_buffer_bytes}
send_timeout_s = {send_timeout_s}

[[models]]
name = "{OPENAI_MODEL}"
provider = "openai"
base_url = "{base}/v1"
api_key_env = "{API_KEY_ENV}"
upstream_model = "mock"
"""
        + (
            f"""
[[models]]
name = "{ANTHROPIC_MODEL}"
provider = "anthropic"
base_url = "{base}"
api_key_env = "{API_KEY_ENV}"
upstream_model = "mock"
"""
            if anthropic
            else ""
        )
    )


def start_gateway(
    logdir: Path,
    mock_port: int,
    port: int | None = None,
    downstream_buffer_bytes: int = 65536,
    send_timeout_s: float = 300.0,
    log_level: str = "warning",
    anthropic: bool = False,
    src: Path | None = None,
    server_extra: str = "",
) -> Managed:
    """The gateway on the mock; ``src`` is a directory holding another build's
    ``gateway`` package (e.g. ``git archive HEAD gateway | tar -x -C DIR``)."""
    port = port or free_port()
    cfg = logdir / "gateway.toml"
    logdir.mkdir(parents=True, exist_ok=True)
    write_gateway_config(
        cfg, mock_port, port, downstream_buffer_bytes, send_timeout_s, anthropic, server_extra
    )
    args = ["-m", "gateway", "--config", str(cfg), "--host", HOST, "--port", str(port)]
    args += ["--log-level", log_level]
    env = {API_KEY_ENV: "loadtest-key"}
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    return spawn("gateway", args, port, logdir, env=env)


async def wait_ready(m: Managed, path: str, timeout_s: float = 20.0) -> None:
    """Poll ``GET path`` until it answers (any status below 500); raise on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if m.proc.poll() is not None:
                raise RuntimeError(f"{m.name} exited with {m.proc.returncode}; see {m.log.name}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(m.url + path) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{m.name} not ready after {timeout_s:.0f}s; see {m.log.name}")


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL (a process that ended is left be)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


def stop(m: Managed, timeout_s: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL this one process; close its log."""
    terminate(m.proc, timeout_s)
    m.log.close()
