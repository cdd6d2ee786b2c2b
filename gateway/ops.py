"""The operator's endpoints: ``/readyz``, ``/metrics``, and the metrics listener.

``GET /readyz`` is 200 while the gateway takes traffic and 503 while it
starts, drains (shutdown), is saturated (admission would turn requests
away), has no usable model (every model's upstream key variable unset:
``unconfigured``) or cannot reach Redis when it needs it
(``state_unavailable``: see :func:`redis_required`). Its *detail*
(``open_streams``; ``unconfigured_models``, the models whose key variable is
unset, with the variables' names; ``state``, the Redis PING;
``deployments_cooling_down``, the deployments in cooldown or waiting for
their half-open trial: the gateway stays ready) is given only
to whoever may see it (:func:`sees_detail`); anyone else gets
``{"status": ...}`` alone.

Who may see ``/metrics`` (key names, per-key usage and budgets) and the
detail, by ``[server]``:

- by default, anyone who reaches the API port (as before: nothing changes);
- ``metrics_port``: a second listener serves ``/metrics``, ``/readyz`` (with
  detail) and ``/healthz``; the API port no longer serves ``/metrics`` and
  its ``/readyz`` has no detail;
- ``metrics_token_env``: ``/metrics`` and the detail need
  ``Authorization: Bearer <token>`` (compared in constant time), on
  whichever listener.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from .config import Settings
from .routing.build import ROUTERS, missing_key_env
from .state import ADMISSION, IDENTITY, PROVIDERS, REDIS, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RedisState = Literal["ok", "unavailable", "busy"]

METRICS_ADDRESS = web.AppKey("metrics_address", tuple)
"""``(host, port)`` the metrics listener is bound to (when ``metrics_port`` is set)."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """One readiness answer: ``status`` (``ready``, ``starting``, ``draining``,
    ``saturated``, ``unconfigured``, ``state_unavailable``), whether that is
    200, and the detail for those who may see it."""

    status: str
    ready: bool
    detail: dict[str, object]


def unconfigured_models(settings: Settings) -> list[dict[str, str]]:
    """``[{"model", "missing_env"}]`` for each model whose key variable is unset."""
    return [
        {"model": m.name, "missing_env": env}
        for m in settings.models
        if (env := missing_key_env(m)) is not None
    ]


def redis_required(app: web.Application) -> bool:
    """Whether Redis not answering makes the gateway unready: ``[state]
    readiness_requires_redis`` when set, else whether some current key (the
    reloaded ones included) has limits and ``fail_open`` is off."""
    state = app[SETTINGS].state
    if state.readiness_requires_redis is not None:
        return state.readiness_requires_redis
    return not state.fail_open and any(k.limited for k in app[IDENTITY].ring.auth.keys)


async def redis_state(app: web.Application) -> RedisState | None:
    """A PING to the app's Redis, bounded by ``[state] timeout_s``: ``ok``,
    ``unavailable``, or ``busy`` when every pooled connection is in use (the
    process is busy; that says nothing of Redis). None without Redis."""
    client = app.get(REDIS)
    if client is None:
        return None  # before the import: redis-py's takes ~1 s, blocking every stream
    from .redisconn import REDIS_ERRORS, PoolExhausted

    if not client.connection_pool.can_get_connection():
        return "busy"
    try:
        async with asyncio.timeout(app[SETTINGS].state.timeout_s):
            await client.ping()
    except PoolExhausted:
        return "busy"
    except REDIS_ERRORS:
        return "unavailable"
    return "ok"


async def readiness(app: web.Application) -> Readiness:
    """See the module docstring."""
    admission = app[ADMISSION]
    detail: dict[str, object] = {"open_streams": admission.open_streams}
    if PROVIDERS not in app:
        return Readiness("starting", False, detail)
    if admission.draining or admission.leaving:
        return Readiness("draining", False, detail)
    if admission.saturated:
        return Readiness("saturated", False, detail)
    redis = await redis_state(app)
    if redis is not None:
        required = redis_required(app)
        detail["state"] = {"redis": redis, "required": required}
        if redis == "unavailable" and required:
            return Readiness("state_unavailable", False, detail)
    settings = app[SETTINGS]
    unconfigured = unconfigured_models(settings)
    if unconfigured:
        detail["unconfigured_models"] = unconfigured
        if len(unconfigured) == len(settings.models):
            return Readiness("unconfigured", False, detail)
        detail["note"] = "ready: the other models serve; the listed ones answer 503"
    cooling = [d for router in app.get(ROUTERS, {}).values() for d in router.cooling_down()]
    if cooling:
        detail["deployments_cooling_down"] = cooling  # the others serve: still ready
    return Readiness("ready", True, detail)


def bearer_ok(request: web.Request, token: str | None) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (True when
    no token is configured)."""
    if token is None:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"), token.encode()
    )


def readyz_handler(app: web.Application, *, metrics_listener: bool) -> Handler:
    """``GET /readyz`` for ``app`` (the gateway), on the API port or the metrics listener."""
    server = app[SETTINGS].server
    token = server.metrics_token()
    plain_port_hides = server.metrics_port is not None and token is None

    async def readyz(request: web.Request) -> web.Response:
        answer = await readiness(app)
        body: dict[str, object] = {"status": answer.status}
        detailed = bearer_ok(request, token) and (metrics_listener or not plain_port_hides)
        if detailed:
            body.update(answer.detail)
        return web.json_response(body, status=200 if answer.ready else 503)

    return readyz


def guarded(handler: Handler, token: str | None) -> Handler:
    """``handler`` behind ``Authorization: Bearer <token>`` (401 without it)."""
    if token is None:
        return handler

    async def guard(request: web.Request) -> web.StreamResponse:
        if not bearer_ok(request, token):
            return web.json_response(
                {"error": "this endpoint needs Authorization: Bearer <metrics token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="sluice-metrics"'},
            )
        return await handler(request)

    return guard


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is serving HTTP."""
    return web.json_response({"status": "ok"})


def metrics_listener(
    metrics: Handler, host: str, port: int, *, reuse_port: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` serving ``/metrics`` (``metrics``, already guarded),
    ``/readyz`` with its detail and ``/healthz`` on ``host:port``, a listener
    of its own, from start-up to cleanup (after the drain)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        side = web.Application()
        side.router.add_get("/metrics", metrics)
        side.router.add_get("/readyz", readyz_handler(app, metrics_listener=True))
        side.router.add_get("/healthz", healthz)
        runner = web.AppRunner(side, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
            await site.start()
            bound = runner.addresses[0]
            app[METRICS_ADDRESS] = (bound[0], bound[1])
            yield
        finally:
            await runner.cleanup()

    return ctx
