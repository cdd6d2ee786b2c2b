"""create_app(settings) -> web.Application: routes, middleware, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from .api import openai as openai_api
from .config import Settings
from .metrics import Metrics, multiprocess_enabled
from .middleware import add_request_id, gateway_middleware
from .providers.base import Provider
from .providers.registry import build_provider
from .state import METRICS, PROVIDERS, SETTINGS


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: providers are built and the gateway takes traffic."""
    if PROVIDERS not in request.app:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    providers: dict[str, Provider] = {m.name: build_provider(m) for m in app[SETTINGS].models}
    app[PROVIDERS] = providers
    yield
    for provider in providers.values():
        await provider.aclose()


def _metrics_registry(metrics: Metrics) -> CollectorRegistry:
    if not multiprocess_enabled():
        return metrics.registry
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def create_app(settings: Settings, metrics: Metrics | None = None) -> web.Application:
    """The gateway application. ``metrics`` defaults to a fresh registry."""
    metrics = metrics or Metrics.create()
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.on_response_prepare.append(add_request_id)
    app.cleanup_ctx.append(_providers_ctx)
    openai_api.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(_metrics_registry(metrics)))
    return app
