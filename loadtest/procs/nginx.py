"""A real nginx in front of gateways, for the tests and the local fleet
(:mod:`loadtest.procs.fleet`; tests import it through ``tests/nginx_server.py``).

:class:`NginxServer` runs Debian's ``nginx`` (``make test`` installs it) in
the foreground with everything under one directory: ``nginx -p DIR -c
DIR/nginx.conf -g 'daemon off;'``, with the pid file, logs and every
``*_temp_path`` in DIR. The site is the shipped ``deploy/nginx/sluice.conf``
itself, rendered by :func:`render_site` (only the listen address changes,
plus whatever a test's ``edit`` does, e.g. a short ``proxy_read_timeout``),
and the replicas are the ``sluice-upstreams.conf`` written next to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from loadtest import procs

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_CONF = REPO_ROOT / "deploy" / "nginx" / "sluice.conf"
LISTEN = "listen 8080"


def nginx_binary() -> str:
    """Path of ``nginx``; raises ``FileNotFoundError`` (``make nginx`` installs it)."""
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if path is None:
        raise FileNotFoundError("nginx not found: `make nginx` installs Debian's")
    return path


def render_site(port: int, edit: Callable[[str], str] | None = None) -> str:
    """``deploy/nginx/sluice.conf`` listening on ``127.0.0.1:port`` instead of
    8080 (the rest of the listen line, ``sndbuf=``, stays), then passed
    through ``edit`` (text -> text). Raises ``ValueError`` if the shipped
    file no longer says ``listen 8080``."""
    text = SITE_CONF.read_text()
    if LISTEN not in text:
        raise ValueError(f"{SITE_CONF} has no {LISTEN!r} to render")
    text = text.replace(LISTEN, f"listen 127.0.0.1:{port}", 1)
    return edit(text) if edit else text


SERVER_PARAMS = "max_fails=1 fail_timeout=5s"
"""Per replica: one failed connection marks it down for 5 s (passive failover)."""


def upstream_lines(upstreams: Sequence[int | str], params: str = SERVER_PARAMS) -> str:
    """``sluice-upstreams.conf``: one ``server`` line per replica; an int is a
    loopback port, a string ``host:port`` is taken as it is."""
    lines = []
    for up in upstreams:
        addr = f"127.0.0.1:{up}" if isinstance(up, int) else up
        lines.append(f"server {addr} {params};".replace(" ;", ";"))
    return "\n".join(lines) + "\n"


def main_conf(prefix: Path, workers: int = 1) -> str:
    """The main ``nginx.conf``: everything nginx writes stays under ``prefix``.
    As root, workers keep root (``user root``) so they can write the temp dirs."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
{temps}
    include {prefix}/sluice.conf;
}}
"""


class NginxServer:
    """One nginx with the shipped site in front of ``upstreams``.

    ``port``: where clients connect (a free one unless given). ``edit``
    rewrites the rendered site (tests use it for a short timeout or a control
    variant). :meth:`start` returns once nginx accepts connections;
    :meth:`reload` rewrites the files and returns once the new workers run.
    """

    def __init__(
        self,
        workdir: Path,
        upstreams: Sequence[int | str],
        *,
        port: int | None = None,
        edit: Callable[[str], str] | None = None,
        workers: int = 1,
        server_params: str = SERVER_PARAMS,
    ) -> None:
        self.prefix = workdir
        self.port = port or procs.free_port()
        self.upstreams = list(upstreams)
        self.edit = edit
        self.workers = workers
        self.server_params = server_params
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def write(self) -> None:
        """Write nginx.conf, sluice.conf (rendered) and sluice-upstreams.conf."""
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(main_conf(self.prefix, self.workers))
        (self.prefix / "sluice.conf").write_text(render_site(self.port, self.edit))
        (self.prefix / "sluice-upstreams.conf").write_text(
            upstream_lines(self.upstreams, self.server_params)
        )

    def command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.prefix), "-c", str(self.conf), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the written files (stdout + stderr in ``.stderr``)."""
        self.write()
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self, timeout_s: float = 10.0) -> NginxServer:
        """Start nginx in the foreground; raises ``RuntimeError`` if it exits
        or does not accept connections within ``timeout_s``."""
        self.write()
        log = (self.prefix / "nginx.stderr").open("ab")
        self.proc = subprocess.Popen(
            self.command("-g", "daemon off;"), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx not listening: {self.logs()}") from None
                time.sleep(0.02)

    def workers_pids(self) -> set[int]:
        """The master's current children (workers, cache processes)."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    def reload(
        self,
        upstreams: Sequence[int | str] | None = None,
        edit: Callable[[str], str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """Rewrite the files (new replica list and/or edit), SIGHUP, and wait
        until the new workers run and the old ones exited (or ``timeout_s``
        passed: old workers finish their open streams first). Raises
        ``RuntimeError`` on a config nginx rejects or no new workers."""
        assert self.proc is not None
        if upstreams is not None:
            self.upstreams = list(upstreams)
        if edit is not None:
            self.edit = edit
        checked = self.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {checked.stderr}")
        old = self.workers_pids()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout_s
        while len(self.workers_pids() - old) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not reload: {self.logs()}")
            time.sleep(0.02)
        # Old workers close the connections they accepted but have not read a
        # request from yet: a client connecting during a reload can lose its
        # request (measured in docs/deploy.md). Wait until they are gone, or
        # until timeout_s if they still serve long streams.
        while old & self.workers_pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Fast shutdown (SIGTERM to the master), then SIGKILL if it lingers."""
        if self.proc is None:
            return
        procs.terminate(self.proc, timeout_s)
        self.proc = None

    def logs(self) -> str:
        parts = []
        for name in ("nginx.stderr", "error.log"):
            path = self.prefix / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
