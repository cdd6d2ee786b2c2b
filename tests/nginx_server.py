"""nginx for tests: :class:`NginxServer` (start/stop/reload, ``port``,
``upstreams``) runs the shipped ``deploy/nginx/sluice.conf`` on free loopback
ports with everything under a temporary directory. The class lives in
:mod:`loadtest.procs.nginx` so the fleet script (:mod:`loadtest.procs.fleet`) starts the
very same nginx; this module adds what tests need around it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from loadtest.procs.nginx import SITE_CONF, NginxServer, nginx_binary, render_site, upstream_lines

__all__ = [
    "SITE_CONF",
    "NginxServer",
    "nginx_binary",
    "render_site",
    "start_nginx",
    "upstream_lines",
]


def start_nginx(
    workdir: Path,
    upstreams: Sequence[int | str],
    edit: Callable[[str], str] | None = None,
    **kwargs: object,
) -> NginxServer:
    """A started :class:`NginxServer` in ``workdir`` (created); fails the test
    with a hint when nginx is not installed. The caller stops it."""
    try:
        nginx_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    return NginxServer(workdir, upstreams, edit=edit, **kwargs).start()  # type: ignore[arg-type]
