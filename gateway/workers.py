"""Several worker processes on one port (``--workers N``), metrics aggregated.

Each worker is a fresh interpreter (multiprocessing "spawn") serving the app
on the same port with ``SO_REUSEPORT``; the kernel spreads connections over
them. prometheus-client's multiprocess mode aggregates their metrics: the
directory in ``PROMETHEUS_MULTIPROC_DIR`` (created empty if unset) must be
in the environment before a worker imports prometheus_client, and any worker's
/metrics reports all of them (prometheus-client docs, "Multiprocess Mode").
SIGTERM/SIGINT to the parent is forwarded to every worker, each of which
drains gracefully; the parent exits with the worst worker status (a worker
killed by signal N counts as 128 + N, the shell's convention, never 0).
SIGHUP is forwarded too: each worker re-reads the config's ``[auth]`` keys.
Workers start with SIGHUP blocked (inherited from the parent's
:func:`gateway.hangup.hold`), so a SIGHUP during start-up waits for their
reload handler instead of killing them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from types import FrameType
from typing import Protocol

from . import hangup


def _worker(config: str | None, host: str, port: int, log_level: str, workers: int) -> None:
    from .__main__ import listen_error
    from .app import run
    from .config import load_settings
    from .log import configure_logging

    settings = load_settings(config)
    configure_logging(log_level)
    try:
        run(settings, host, port, config, workers, reuse_port=True)
    except OSError as err:
        print(f"sluice: {listen_error(err, host, port)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def exit_status(exitcode: int | None) -> int:
    """A worker's ``exitcode`` as a shell status: killed by signal N
    (``exitcode == -N``) is 128 + N."""
    if exitcode is None:
        return 0
    return 128 - exitcode if exitcode < 0 else exitcode


STOP_WAIT_S = 60.0
"""How long a worker left running when the parent's wait ends early may take
to stop after SIGTERM (its own drain) before it is killed."""


class _Child(Protocol):
    @property
    def pid(self) -> int | None: ...

    def is_alive(self) -> bool: ...


def forward_signal(procs: Sequence[_Child], signum: int) -> None:
    """Send ``signum`` to every worker still running; never raises.

    A worker may be gone between the check and the ``kill``: the parent's
    ``join`` can reap it (``waitpid`` returned) just before this handler
    runs, and ``is_alive`` then still says alive. ``ProcessLookupError``
    there once escaped the handler and ended the parent's wait, so the other
    workers never got the SIGTERM and the parent waited for them at exit."""
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)


def serve_workers(config: str | None, host: str, port: int, workers: int, log_level: str) -> int:
    """Run ``workers`` processes until they exit; returns the exit status."""
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="sluice-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    else:
        # Stale files from a previous run would be counted again.
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker, args=(config, host, port, log_level, workers), name=f"sluice-{i}"
        )
        for i in range(workers)
    ]
    hangup.hold()  # the workers inherit a blocked SIGHUP (main() already holds it)
    for proc in procs:
        proc.start()
    print(f"======== {workers} workers on http://{host}:{port} ========", flush=True)

    def forward(signum: int, frame: FrameType | None) -> None:
        forward_signal(procs, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # each worker re-reads [auth]
    hangup.release(handled=True)  # one held during the start goes to the workers now
    from prometheus_client import multiprocess

    status = 0
    try:
        for proc in procs:
            proc.join()
            if proc.pid is not None:
                multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
            status = max(status, exit_status(proc.exitcode))
    finally:
        # Whatever ended the wait, no worker outlives the parent (multiprocessing
        # would join it at exit, forever): each still running is stopped as
        # SIGTERM would, then killed if it is not gone within a minute.
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(STOP_WAIT_S)
            if proc.is_alive():
                proc.kill()
    if own_dir is not None:
        shutil.rmtree(own_dir, ignore_errors=True)
    return status
