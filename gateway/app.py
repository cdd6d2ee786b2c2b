"""create_app(settings) -> web.Application: routes, middleware, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiohttp import web
from aiohttp.web_runner import GracefulExit
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from . import __version__, hangup
from .admission import Admission
from .api import anthropic as anthropic_api
from .api import gemini as gemini_api
from .api import key as key_api
from .api import models as models_api
from .api import openai as openai_api
from .api import responses as responses_api
from .api import streams as streams_api
from .auth import add_rate_limit_headers, auth_middleware, quotas_ctx
from .body_budget import BODY_BUDGET, BodyBudget
from .config import Settings
from .cors import add_cors_headers, cors_middleware
from .cost.prices import PriceBook
from .cost.spend import SpendMeter
from .detached import Detached
from .key_exposure import key_exposures
from .keys import Identity
from .metrics import Metrics, multiprocess_enabled
from .middleware import add_dropped_params, add_request_id, gateway_middleware
from .ops import guarded, healthz, metrics_listener, readyz_handler, unconfigured_models
from .providers.base import Provider
from .providers.http import UpstreamSessions
from .providers.registry import build_provider, build_responses_provider
from .routing.build import ROUTERS, build_routers, close_routers
from .state import (
    ADMISSION,
    CONFIG_PATH,
    DETACHED,
    IDENTITY,
    METRICS,
    NATIVE_RESPONSES,
    PRICES,
    PROVIDERS,
    REDIS,
    SETTINGS,
    SPEND_METER,
    STREAM_STORE,
    WORKERS,
)
from .store.base import StreamStore
from .store.memory import MemoryStreamStore

log = structlog.get_logger("gateway.app")


STATIC_CACHE = "public, max-age=300"
PLAYGROUND_HEADERS = {
    "Cache-Control": STATIC_CACHE,
    # The page loads only its own scripts and talks only to this gateway.
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def static_file(
    name: str, content_type: str, headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ``GET`` handler serving ``gateway/static/<name>`` (read once, now),
    UTF-8, with ``content_type`` and ``headers`` (default: cacheable 5 min)."""
    body = resources.files("gateway").joinpath("static", name).read_bytes()
    extra = {"Cache-Control": STATIC_CACHE} if headers is None else headers

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=extra)

    return serve


async def _leave_on_sigterm(app: web.Application) -> None:
    """``on_startup`` (after aiohttp installed its signal handlers): with
    ``[server] drain_delay_s`` > 0, SIGTERM first turns ``/readyz`` 503 and
    keeps serving for that long, then shuts down as aiohttp would (a second
    SIGTERM, or SIGINT, shuts down at once)."""
    delay = app[SETTINGS].server.drain_delay_s
    if delay <= 0:
        return
    loop = asyncio.get_running_loop()
    admission = app[ADMISSION]

    def on_sigterm() -> None:
        if admission.leaving:
            raise GracefulExit
        admission.leaving = True
        log.info("leaving", drain_delay_s=delay, open_streams=admission.open_streams)
        loop.call_later(delay, _graceful_exit)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


async def _release_sighup(app: web.Application) -> None:
    """``on_startup``, after ``cleanup_ctx`` (so after :func:`~gateway.auth.quotas_ctx`
    installed the SIGHUP reload when there is a config file): deliver a SIGHUP
    held since start-up (:mod:`gateway.hangup`), or ignore SIGHUP for good."""
    hangup.release(handled=CONFIG_PATH in app)


def _graceful_exit() -> None:
    raise GracefulExit  # a SystemExit: asyncio lets it out of the loop, as aiohttp's own handler


async def _drain_on_shutdown(app: web.Application) -> None:
    """``on_shutdown``: the listening sockets are closed; let open streams end."""
    await app[ADMISSION].drain(app[SETTINGS].server.shutdown_grace_s)


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    for missing in unconfigured_models(settings):
        log.warning(
            "upstream_key_missing",
            **missing,
            hint='set it, or api_key_env = "" for a server that needs no key',
        )
    for exposure in key_exposures(settings):
        log.warning(exposure.pop("event"), **exposure)
    sessions = UpstreamSessions()
    providers: dict[str, Provider] = {
        m.name: build_provider(m, sessions, settings.stream_for(m).connect_timeout_s)
        for m in settings.models
    }
    app[PROVIDERS] = providers
    native: dict[str, Provider] = {
        m.name: p
        for m in settings.models
        if (p := build_responses_provider(m, sessions, settings.stream_for(m).connect_timeout_s))
    }
    app[NATIVE_RESPONSES] = native
    metrics = app[METRICS] if settings.server.metrics_enabled else None
    app[ROUTERS] = build_routers(settings, sessions, metrics.deployments if metrics else None)
    yield
    await close_routers(app[ROUTERS])
    for provider in providers.values():
        await provider.aclose()
    await sessions.aclose()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the stream store: Redis when ``[state] redis_url`` is
    set (shared by every replica), else this process's memory."""
    settings = app[SETTINGS]
    conf = settings.store
    store: StreamStore
    if REDIS in app:
        from .store.redis import RedisStreamStore

        store = RedisStreamStore(
            app[REDIS],
            ttl_s=conf.ttl_s,
            stream_max_bytes=conf.stream_max_bytes,
            max_bytes=conf.max_bytes,
            running_ttl_s=settings.stream.deadline_s + 60,
            producer_lease_s=conf.producer_lease_s,
            on_cancel=app[DETACHED].cancel,
        )
    else:
        store = MemoryStreamStore(
            ttl_s=conf.ttl_s,
            max_bytes=conf.max_bytes,
            stream_max_bytes=conf.stream_max_bytes,
            running_ttl_s=settings.stream.deadline_s + 60,
        )
    app[STREAM_STORE] = store
    yield
    # After on_shutdown's drain: stop what still runs, then drop the store.
    await app[DETACHED].aclose()
    await store.aclose()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the process's one Redis client when ``[state] redis_url``
    is set (connected lazily; every Redis-backed store shares its pool)."""
    state = app[SETTINGS].state
    if state.redis_url is None:
        yield
        return
    from .redisconn import connect

    client = app[REDIS] = connect(state)
    yield
    await client.aclose()


def _metrics_registry(metrics: Metrics) -> CollectorRegistry:
    if not multiprocess_enabled():
        return metrics.registry
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiohttp's runner (``web.run_app``, ``AppRunner``,
    ``TestServer``) that the gateway's behaviour depends on."""
    return {
        # Cancel a handler the moment its client disconnects, so the upstream
        # closes at once, also while waiting for the first token.
        "handler_cancellation": True,
        # Idle connections close after this; it also bounds a client that
        # sends its headers very slowly (aiohttp starts the timer on connect).
        "keepalive_timeout": settings.server.keepalive_timeout_s,
        # Our on_shutdown hook ends streams after the grace period; aiohttp's
        # own timeout is only the backstop for anything left after that.
        "shutdown_timeout": settings.server.shutdown_grace_s + 10.0,
    }


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """uvloop's event loop when ``[server] uvloop`` is on and it is installed
    (a Linux/macOS dependency), else asyncio's default loop."""
    if settings.server.uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
            log.warning("uvloop_unavailable")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def listen_url(host: str, port: int) -> str:
    """``http://host:port`` (an IPv6 host in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def state_store_of(settings: Settings) -> str:
    """Where streams and per-key counters live: ``memory``, or the Redis URL
    without its user and password."""
    url = settings.state.redis_url
    if url is None:
        return "memory"
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def startup_fields(settings: Settings, host: str, port: int, workers: int = 1) -> dict[str, Any]:
    """The fields of the one ``started`` log line: ``version``, ``pid`` (what
    ``kill -HUP`` needs), ``listen`` (URL), ``models`` (names), ``state_store``
    (:func:`state_store_of`), ``workers``, ``playground`` (its URL, or
    null when it is not served), and ``otel`` (OpenTelemetry export on)."""
    url = listen_url(host, port)
    return {
        "version": __version__,
        "pid": os.getpid(),
        "listen": url,
        "models": [m.name for m in settings.models],
        "state_store": state_store_of(settings),
        "workers": workers,
        "playground": f"{url}/playground" if settings.server.playground_on(host) else None,
        "otel": settings.otel.active,
    }


GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic collector's thresholds while serving (CPython's default: 700, 10, 10).

Every stream's objects live as long as it does (seconds), so at the default a
young collection every 700 allocations finds them alive and promotes them:
they reach the oldest generation, and a full collection (walking every live
object of every open stream: 8-41 ms of CPU at 200 open streams) runs every
few seconds, plus a middle one (2-6 ms) every half second; each stops every
stream at once, which is the added-TTFT tail. At 50,000 most of a stream's
objects are gone before a young collection sees them: at 200 paced streams
two collections in 3,000 streams instead of 6 full and 58 middle ones
(``python -m loadtest setup_cost``, docs/architecture.md). Nothing per
stream is a reference cycle (its objects are freed by their counts), so
the garbage a young collection waits for stays small."""


def run(
    settings: Settings,
    host: str,
    port: int,
    config_path: str | None = None,
    workers: int = 1,
    **options: Any,
) -> None:
    """Serve until SIGINT/SIGTERM (``web.run_app``) on :func:`new_event_loop`.

    Once the socket listens, one structured log line, ``event="started"``
    (:func:`startup_fields`), instead of aiohttp's plain-text banner (a
    ``print`` in ``options`` is ignored). ``gc.freeze()`` first: what import
    and start-up left behind (~54k objects) moves out of the collector's way,
    so full collections stop walking it on every stream; then the collector's
    thresholds become :data:`GC_THRESHOLDS` (docs/architecture.md, "Facts the
    design rests on").
    """
    options.pop("print", None)

    def started(_banner: str) -> None:  # aiohttp calls it once its sites listen
        log.info("started", **startup_fields(settings, host, port, workers))

    app = create_app(settings, listen_host=host)
    if config_path is not None:
        app[CONFIG_PATH] = config_path  # SIGHUP re-reads its [auth]
    app[WORKERS] = workers
    app.on_startup.append(_leave_on_sigterm)  # here, not in create_app: a process's signals
    app.on_startup.append(_release_sighup)  # after quotas_ctx installed the reload handler
    loop = new_event_loop(settings)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    web.run_app(
        app,
        host=host,
        port=port,
        loop=loop,
        backlog=settings.server.backlog,
        access_log=None,
        print=started,
        **server_options(settings),
        **options,
    )


def create_app(
    settings: Settings, metrics: Metrics | None = None, *, listen_host: str | None = None
) -> web.Application:
    """The gateway application. ``metrics`` defaults to a fresh registry;
    ``listen_host`` is the address it will listen on (default ``[server]
    host``), which decides whether the playground is served by default."""
    metrics = metrics or Metrics.create()
    app = web.Application(
        middlewares=[gateway_middleware, cors_middleware, auth_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    metrics.write_buffer_limit.set(settings.stream.downstream_buffer_bytes)
    app[ADMISSION] = Admission(
        settings.server.max_streams, settings.server.max_queued_bytes, metrics
    )
    app[DETACHED] = Detached(metrics)
    app[BODY_BUDGET] = BodyBudget(
        settings.server.max_body_bytes_in_flight, settings.server.body_budget_wait_s, metrics
    )
    app[IDENTITY] = Identity(settings.auth)
    app[PRICES] = PriceBook.resolve(settings.models)
    app[SPEND_METER] = SpendMeter(metrics)
    app.on_response_prepare.append(add_request_id)
    app.on_response_prepare.append(add_dropped_params)
    app.on_response_prepare.append(add_rate_limit_headers)
    app.on_response_prepare.append(add_cors_headers)
    app.on_shutdown.append(_drain_on_shutdown)
    if settings.otel.active:
        _add_telemetry(app, metrics)  # cleaned up last: after the streams ended
    app.cleanup_ctx.append(_providers_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(quotas_ctx)
    app.cleanup_ctx.append(_store_ctx)  # cleaned up first: streams before sessions
    openai_api.add_routes(app)
    anthropic_api.add_routes(app)
    models_api.add_routes(app)
    responses_api.add_routes(app)
    streams_api.add_routes(app)
    key_api.add_routes(app)
    gemini_api.add_routes(app)
    # The browser client (an ES module); and the playground page built on it.
    app.router.add_get("/sluice.js", static_file("sluice.js", "text/javascript"))
    if settings.server.playground_on(listen_host):
        app.router.add_get(
            "/playground", static_file("playground.html", "text/html", PLAYGROUND_HEADERS)
        )
        app.router.add_get("/playground.js", static_file("playground.js", "text/javascript"))
    # Operator endpoints (gateway/ops.py): /metrics on this port or a listener
    # of its own, behind a token when [server] metrics_token_env is set.
    server = settings.server
    metrics_handler = guarded(
        make_aiohttp_handler(_metrics_registry(metrics)), server.metrics_token()
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz_handler(app, metrics_listener=False))
    if server.metrics_port is None:
        app.router.add_get("/metrics", metrics_handler)
    else:
        app.cleanup_ctx.append(
            metrics_listener(
                metrics_handler,
                server.metrics_host or listen_host or server.host,
                server.metrics_port,
                reuse_port=multiprocess_enabled(),
            )
        )
    return app


def _add_telemetry(app: web.Application, metrics: Metrics) -> None:
    """``[otel] enabled``: the OpenTelemetry SDK (imported only then), unless
    ``OTEL_SDK_DISABLED=true``. GenAI metrics on ``/metrics`` too, except with
    several worker processes (the SDK's Prometheus reader sees one process)."""
    from .otel.sdk import telemetry_ctx

    registry = None if multiprocess_enabled() else metrics.registry
    app.cleanup_ctx.append(telemetry_ctx(registry))
