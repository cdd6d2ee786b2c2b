"""``python -m gateway`` / ``sluice``: load settings and serve.

Usage: ``sluice [--config PATH] [--host HOST] [--port PORT] [--log-level LEVEL]
[--workers N]``, and ``sluice keys new NAME``: a fresh client key's secret,
once, on stderr, and on stdout the ``[[auth.keys]]`` block for the config
(so ``sluice keys new NAME >> sluice.toml`` appends just the block).
Without ``--config`` (or ``SLUICE_CONFIG``) it serves the built-in simulator.
Exit status 2 for a bad configuration (each bad key named on stderr), an
address it cannot listen on (one line on stderr: address in use, ...), or a
setup that would be unsafe or wrong (:func:`refusal`): no client keys on a
non-loopback address without ``[auth] anonymous = true``; several workers
with per-key limits and no ``[state] redis_url``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import TYPE_CHECKING

from . import hangup

if TYPE_CHECKING:
    from .config import Settings


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


LIMIT_OPTIONS = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent_streams",
    "token_budget",
)


def keys_main(argv: list[str]) -> int:
    """``sluice keys new NAME``."""
    from .config_auth import ApiKeySettings
    from .keys import new_secret, sha256_hex, toml_block

    p = argparse.ArgumentParser(prog="sluice keys", description="client API keys")
    sub = p.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="make a key: prints its secret (once) and its config block")
    new.add_argument("name", help="the key's name in logs, metrics and errors (e.g. team-a)")
    new.add_argument("--models", help="comma-separated allow-list (default: every model)")
    for limit in LIMIT_OPTIONS:
        new.add_argument(f"--{limit.replace('_', '-')}", type=int, dest=limit, metavar="N")
    new.add_argument("--usd-budget", type=float, metavar="USD", help="US dollars per period")
    new.add_argument("--budget-period", choices=("day", "month"), default="day")
    args = p.parse_args(argv)
    options: dict[str, object] = {
        k: getattr(args, k) for k in LIMIT_OPTIONS if getattr(args, k) is not None
    }
    if args.usd_budget is not None:
        options["usd_budget"] = args.usd_budget
    if args.models:
        options["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.token_budget is not None or args.usd_budget is not None:
        options["budget_period"] = args.budget_period
    try:
        ApiKeySettings(name=args.name, sha256="0" * 64, **options)  # type: ignore[arg-type]
    except ValueError as err:
        print(f"sluice: invalid key {args.name!r}: {err}", file=sys.stderr)
        return 2
    secret = new_secret()
    # The secret to the terminal (stderr), the block to stdout: so
    # `sluice keys new NAME >> sluice.toml` appends only the block.
    print(
        f"Secret of key {args.name!r} (shown only now; Sluice keeps only its SHA-256):",
        file=sys.stderr,
    )
    print(f"  {secret}", file=sys.stderr, flush=True)
    print(f"# Client key {args.name!r}: add to the config, then restart or send SIGHUP.")
    print(toml_block(args.name, sha256_hex(secret), options), end="")
    return 0


def refusal(settings: Settings, host: str, workers: int) -> str | None:
    """Why the gateway must not start this way (one line), or None."""
    from .config import is_loopback

    auth = settings.auth
    if not auth.keys and not auth.anonymous and not is_loopback(host):
        return (
            f"refusing to listen on {host} with no client keys: anyone who reaches it would "
            "spend the upstream keys; add [[auth.keys]] (`sluice keys new NAME`), or set "
            "[auth] anonymous = true to serve anyone"
        )
    limited = [k.name for k in auth.keys if k.limited]
    if workers > 1 and limited and settings.state.redis_url is None:
        return (
            f"refusing --workers {workers}: keys with limits ({', '.join(limited)}) need "
            "[state] redis_url so the workers share one count (or run one worker)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    # First, before the imports that take most of start-up: a SIGHUP (reload)
    # waits, blocked, until the app installs its handler (gateway.hangup);
    # worker processes inherit the block.
    hangup.hold()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys_main(argv[1:])
    from .app import run
    from .config import ConfigError, load_settings
    from .log import configure_logging

    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"sluice: {err}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if (why := refusal(settings, host, args.workers)) is not None:
        print(f"sluice: {why}", file=sys.stderr)
        return 2
    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(args.config, host, port, args.workers, args.log_level)
    configure_logging(args.log_level)
    try:
        run(settings, host, port, args.config)
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
