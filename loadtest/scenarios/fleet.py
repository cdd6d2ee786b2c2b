"""A fleet on one machine: Redis, the mock upstream, N replicas and nginx.

The N gateway replicas share that Redis, and nginx
(``deploy/nginx/sluice.conf``) balances them round robin: the same topology as
``docker-compose.yml``, with local processes.

Run: ``python -m loadtest fleet --replicas 3`` (or ``make fleet``); prints the
URL and serves until Ctrl-C or SIGTERM, then stops everything it started.
Models: ``mock`` (the mock upstream; prompt directives such as
``[mock ttft_ms=50 itl_ms=20 tokens=100]`` shape a stream) and ``sim`` (the
built-in simulator). ``--config extra.toml`` appends your own TOML (client
keys, ``[server]`` settings) to every replica's config.

The processes are :class:`loadtest.procs.fleet.Fleet`'s (also what
``tests/test_fleet.py`` and ``python -m loadtest --fleet N`` use).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from loadtest import cli, procs
from loadtest.procs.fleet import Fleet


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest fleet`` command line."""
    p = cli.parser("loadtest fleet", __doc__)
    p.add_argument("--replicas", type=int, default=2, help="gateway replicas behind nginx")
    p.add_argument("--port", type=int, default=8080, help="nginx's port (0: a free one)")
    p.add_argument("--workers", type=int, default=1, help="--workers of each replica")
    p.add_argument(
        "--config", type=Path, default=None, help="TOML appended to every replica's config"
    )
    p.add_argument(
        "--dir", type=Path, default=None, help="configs and logs (None: a temporary directory)"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    procs.raise_nofile(16384)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="sluice-fleet-"))
    extra = args.config.read_text() if args.config else ""
    fleet = Fleet(workdir, args.replicas, args.port, args.workers, extra, nginx_workers=2)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fleet.start()
    try:
        print(f"Sluice fleet: {fleet.url}  ({args.replicas} replicas:"
              f" {', '.join(r.url for r in fleet.gateways)}; redis {fleet.redis_url};"
              f" logs in {workdir})", flush=True)  # fmt: skip
        print("Ctrl-C stops everything", file=sys.stderr, flush=True)
        while not stop:
            with contextlib.suppress(InterruptedError):
                signal.pause()
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
