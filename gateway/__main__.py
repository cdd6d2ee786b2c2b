"""``python -m gateway`` / ``sluice``: load settings and serve.

Usage: ``sluice [--config PATH] [--host HOST] [--port PORT] [--log-level LEVEL]
[--workers N]``.
Without ``--config`` (or ``SLUICE_CONFIG``) it serves the built-in simulator.
Exit status 2 for a bad configuration (each bad key named on stderr) or an
address it cannot listen on (one line on stderr: address in use, ...).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from .app import run
from .config import ConfigError, load_settings
from .log import configure_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description="LLM streaming gateway")
    p.add_argument("--config", default=os.environ.get("SLUICE_CONFIG"), help="TOML config file")
    p.add_argument("--host", help="listen address (overrides [server] host)")
    p.add_argument("--port", type=int, help="listen port (overrides [server] port)")
    p.add_argument("--log-level", default=os.environ.get("SLUICE_LOG_LEVEL", "info"))
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"sluice: {err}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(args.config, host, port, args.workers, args.log_level)
    configure_logging(args.log_level)
    try:
        run(settings, host, port, print=lambda msg: print(msg, flush=True))
    except OSError as err:
        print(f"sluice: {listen_error(err, host, port)}", file=sys.stderr)
        return 2
    return 0


def listen_error(err: OSError, host: str, port: int) -> str:
    """One line for an address the gateway cannot listen on (``EADDRINUSE``, ...)."""
    if err.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: address already in use (--port picks another)"
    return f"cannot listen on {host}:{port}: {err.strerror or err}"


if __name__ == "__main__":
    sys.exit(main())
