"""A fleet on one machine, as processes: Redis, the mock upstream, N gateway
replicas sharing that Redis, and nginx (``deploy/nginx/sluice.conf``)
balancing them round robin; the same topology as ``docker-compose.yml``.

:class:`Fleet` (``start()``, ``stop()``, ``kill()``, ``terminate()``,
``restart()``) is what ``python -m loadtest fleet`` serves, what
``python -m loadtest --fleet N`` (:mod:`loadtest.measure.fleet`) measures and
what ``tests/test_fleet.py`` tests. Everything is synchronous, so a test
module can hold one fleet for all its tests. Models: ``mock`` (the mock
upstream; prompt directives such as ``[mock ttft_ms=50 itl_ms=20 tokens=100]``
shape a stream) and ``sim`` (the built-in simulator).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from loadtest import procs
from loadtest.procs.nginx import NginxServer

HOST: Final = procs.HOST
MOCK_MODEL: Final = "mock"
SIM_MODEL: Final = "sim"


def redis_binary() -> str:
    """Path of ``redis-server``; raises ``FileNotFoundError`` (``make redis``)."""
    path = shutil.which("redis-server")
    if path is None and Path("/usr/bin/redis-server").exists():
        path = "/usr/bin/redis-server"
    if path is None:
        raise FileNotFoundError("redis-server not found: `make redis` installs Debian's")
    return path


def redis_command(port: int, workdir: Path) -> list[str]:
    """A throwaway ``redis-server`` on loopback ``port``: no RDB snapshots, no
    AOF, its files in ``workdir`` (the fleet's, and auth_overhead's and
    state_burst's Redis)."""
    return [redis_binary(), "--port", str(port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip


def gateway_config(
    redis_url: str,
    mock_port: int,
    *,
    shutdown_grace_s: float = 10.0,
    lease_ttl_s: float = 60.0,
    extra: str = "",
) -> str:
    """One replica's TOML: the ``mock`` and ``sim`` models, counters and the
    stream store in Redis (``[state] redis_url``), ``extra`` appended
    (``[[auth.keys]]`` blocks, ...). ``lease_ttl_s``: how long a killed
    replica's concurrency slots stay taken (seconds)."""
    return f"""# written by loadtest fleet: one replica of the fleet
[server]
shutdown_grace_s = {shutdown_grace_s}
max_streams = 100000
max_queued_bytes = 17179869184

[state]
redis_url = "{redis_url}"
lease_ttl_s = {lease_ttl_s}

[[models]]
name = "{MOCK_MODEL}"
provider = "openai"
base_url = "http://{HOST}:{mock_port}/v1"
api_key_env = ""
upstream_model = "mock"

[[models]]
name = "{SIM_MODEL}"
provider = "sim"
ttft_ms = 5
itl_ms = 1
output_tokens = 8

{extra}"""


def _wait(predicate: object, what: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}")
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout_s:.0f}s")
        time.sleep(0.02)


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of ``GET url``; None when the connection fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass(slots=True)
class Replica:
    """One gateway replica: its port, config file and (while running) process."""

    index: int
    port: int
    config: Path
    workers: int = 1
    managed: procs.Managed | None = None

    @property
    def name(self) -> str:
        return f"gateway-{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.managed is not None
        return self.managed.pid


@dataclass(slots=True)
class Fleet:
    """Redis + mock upstream + ``replicas`` gateways + nginx, under ``workdir``
    (configs and one log per process). ``port``: nginx's (free if 0)."""

    workdir: Path
    replicas: int = 2
    port: int = 0
    workers: int = 1
    extra_config: str = ""
    shutdown_grace_s: float = 10.0
    lease_ttl_s: float = 60.0
    mock_args: list[str] = field(default_factory=list)
    nginx_workers: int = 1
    redis_port: int = 0
    redis: subprocess.Popen[bytes] | None = None
    mock: procs.Managed | None = None
    gateways: list[Replica] = field(default_factory=list)
    nginx: NginxServer | None = None

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"

    def start(self, timeout_s: float = 30.0) -> Fleet:
        """Start everything, each waited for (Redis PONG, mock and replicas
        ready, nginx listening); on any failure stop what started and raise."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_redis(timeout_s)
            self.mock = procs.start_mock(self.workdir / "logs", extra=self.mock_args)
            procs_wait_port(self.mock, timeout_s)
            text = gateway_config(
                self.redis_url,
                self.mock.port,
                shutdown_grace_s=self.shutdown_grace_s,
                lease_ttl_s=self.lease_ttl_s,
                extra=self.extra_config,
            )
            for i in range(self.replicas):
                config = self.workdir / f"gateway-{i + 1}.toml"
                config.write_text(text)
                self.gateways.append(Replica(i, procs.free_port(), config, self.workers))
            for replica in self.gateways:
                self.spawn(replica)
            for replica in self.gateways:
                self.wait_ready(replica, timeout_s)
            self.nginx = NginxServer(
                self.workdir / "nginx",
                [r.port for r in self.gateways],
                port=self.port or None,
                workers=self.nginx_workers,
            )
            self.nginx.start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self, timeout_s: float) -> None:
        self.redis_port = self.redis_port or procs.free_port()
        log = (self.workdir / "redis.log").open("ab")
        self.redis = subprocess.Popen(
            redis_command(self.redis_port, self.workdir), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        _wait(lambda: _redis_pong(self.redis_port), "redis-server", timeout_s, self.redis)

    def spawn(self, replica: Replica) -> None:
        """Start ``replica``'s process (not waited for: :meth:`wait_ready`)."""
        args = ["-m", "gateway", "--config", str(replica.config), "--host", HOST,
                "--port", str(replica.port), "--log-level", "warning"]  # fmt: skip
        if replica.workers > 1:
            args += ["--workers", str(replica.workers)]
        env = {k: "" for k in ("PROMETHEUS_MULTIPROC_DIR",) if k in os.environ}
        replica.managed = procs.spawn(replica.name, args, replica.port, self.workdir / "logs", env)

    def wait_ready(self, replica: Replica, timeout_s: float = 30.0) -> None:
        """Until ``replica`` answers ``GET /readyz`` with 200."""
        assert replica.managed is not None
        _wait(lambda: http_status(replica.url + "/readyz") == 200, replica.name, timeout_s,
              replica.managed.proc)  # fmt: skip

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` and reap it (its sockets close at once)."""
        replica = self.gateways[index]
        assert replica.managed is not None
        replica.managed.proc.kill()
        replica.managed.proc.wait(10)
        replica.managed.log.close()

    def terminate(self, index: int) -> None:
        """SIGTERM replica ``index`` (graceful: see :meth:`wait_exit`)."""
        replica = self.gateways[index]
        assert replica.managed is not None
        replica.managed.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, index: int, timeout_s: float = 60.0) -> int:
        """Wait for replica ``index`` to exit; its exit status."""
        replica = self.gateways[index]
        assert replica.managed is not None
        code = replica.managed.proc.wait(timeout_s)
        replica.managed.log.close()
        return code

    def restart(self, index: int, timeout_s: float = 30.0) -> None:
        """Start replica ``index`` again on its port and wait until ready."""
        replica = self.gateways[index]
        self.spawn(replica)
        self.wait_ready(replica, timeout_s)

    def stop(self) -> None:
        """Stop everything this fleet started (nginx first, Redis last)."""
        if self.nginx is not None:
            self.nginx.stop()
        for replica in self.gateways:
            if replica.managed is not None:
                procs.stop(replica.managed, max(5.0, self.shutdown_grace_s + 5.0))
        if self.mock is not None:
            procs.stop(self.mock)
        if self.redis is not None:
            if self.redis.poll() is None:
                self.redis.terminate()
                try:
                    self.redis.wait(10)
                except subprocess.TimeoutExpired:
                    self.redis.kill()
                    self.redis.wait(10)
            self.redis = None

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def procs_wait_port(m: procs.Managed, timeout_s: float) -> None:
    """Until ``m`` accepts TCP connections (raises if it exits first)."""

    def accepting() -> bool:
        try:
            socket.create_connection((HOST, m.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    _wait(accepting, m.name, timeout_s, m.proc)
