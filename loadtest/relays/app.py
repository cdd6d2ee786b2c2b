"""What the two comparison relays share (:mod:`loadtest.relays.floor`,
:mod:`loadtest.relays.baseline`): an aiohttp app holding the upstream base URL
and one ``ClientSession`` with no connection cap and no timeout, as a plain
relay would, a ``/healthz``, and the relay handler on the given paths."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

import aiohttp
from aiohttp import web

UPSTREAM: Final = web.AppKey("relay_upstream", str)
SESSION: Final = web.AppKey("relay_session", aiohttp.ClientSession)


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    # limit=0: aiohttp's default pool caps a session at 100 connections, which
    # would queue streams 101+ inside the relay; no timeout, as in a plain relay.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout()) as s:
        app[SESSION] = s
        yield


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def relay_app(
    upstream: str,
    relay: Callable[[web.Request], Awaitable[web.StreamResponse]],
    paths: Sequence[str],
) -> web.Application:
    """An app serving ``relay`` on ``POST`` to each of ``paths`` in front of
    ``upstream`` (base URL without a path, read as ``app[UPSTREAM]``)."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session_ctx)
    for path in paths:
        app.router.add_post(path, relay)
    app.router.add_get("/healthz", _health)
    return app
