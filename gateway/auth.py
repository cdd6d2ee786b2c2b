"""Client authentication on every API route (``/v1/...``), the rate-limit
headers, the quota store's lifecycle and the key reload on SIGHUP.

- :func:`auth_middleware` (inside :func:`~gateway.middleware.gateway_middleware`,
  which renders its errors in the route's dialect): a request to ``/v1/...``
  presents a key (``Authorization: Bearer`` or ``x-api-key``, see
  :mod:`gateway.keys`); no key, an unknown or an expired one is 401
  ``invalid_api_key`` unless the gateway is open (no keys configured) or
  ``[auth] anonymous`` serves requests without a key. ``/healthz``,
  ``/readyz`` and ``/metrics`` are never asked for a key. The key's *name*
  goes on the request's summary log line (``key``).
- :func:`add_rate_limit_headers` (``on_response_prepare``): the headers of
  :mod:`gateway.quota.headers` on every answer to a keyed request, streams
  included (their headers go out when the stream core prepares its response).
- :func:`quotas_ctx`: the store (Redis when ``[state] redis_url``, on the
  app's one client, :data:`~gateway.state.REDIS`) and the lease renewals.
- :func:`reload_keys`: re-read ``[auth]`` from the config file; a file that
  fails validation keeps the old keys and logs why (``keys_reload_failed``),
  and so does one that would remove every key without ``anonymous = true``
  or bring limits to several workers without Redis. Only ``[auth]`` is
  re-read; other sections need a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from . import hangup
from .config import ConfigError, load_settings
from .config_auth import ApiKeySettings
from .errors import (
    AuthenticationFailed,
    GatewayError,
    ModelNotAllowed,
    StateBusy,
    StateUnavailable,
)
from .keys import expired, presented_digest
from .middleware import is_anthropic
from .quota.headers import rate_limit_headers
from .quota.limiter import Quotas, QuotaView
from .quota.memory import MemoryQuotaStore
from .quota.store import QuotaStore, StoreUnavailable
from .state import (
    CONFIG_PATH,
    DETACHED,
    IDENTITY,
    KEY,
    METRICS,
    QUOTA_VIEW,
    QUOTAS,
    REDIS,
    SETTINGS,
    SUMMARY,
    WORKERS,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("gateway.auth")

API_PREFIX = ("/v1/", "/v1beta/")
"""Paths that take client keys (``/v1beta/``: the Gemini-format routes)."""
_HOW = "send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"


def _fail(request: web.Request, reason: str, message: str) -> AuthenticationFailed:
    request.app[METRICS].auth_failures.labels(reason).inc()
    request[SUMMARY]["auth_failure"] = reason
    return AuthenticationFailed(message)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    ring = request.app[IDENTITY].ring
    if not ring.enabled:
        return await handler(request)
    digest = presented_digest(request.headers) or gemini_digest(request)
    if digest is None:
        if ring.anonymous:
            return await handler(request)
        raise _fail(request, "missing", f"No API key provided; {_HOW}")
    key = ring.lookup(digest)
    del digest
    if key is None:
        raise _fail(request, "unknown", "Incorrect API key provided")
    if expired(key):
        request[SUMMARY]["key"] = key.name
        raise _fail(request, "expired", f"The API key '{key.name}' has expired")
    request[KEY] = key
    request[SUMMARY]["key"] = key.name
    try:
        response = await handler(request)
    except (StateUnavailable, StateBusy):
        raise  # the store just failed or is saturated: do not wait on it again
    except GatewayError:
        await _peek(request, key)  # errors before admission (403, 404, 400) too
        raise
    await _peek(request, key)
    return response


def gemini_digest(request: web.Request) -> bytes | None:
    """Gemini-format routes: SHA-256 of the key in ``x-goog-api-key`` (what
    ``google-genai`` sends) or the ``key`` query parameter
    (https://ai.google.dev/api#authentication); None elsewhere or without one."""
    if not request.path.startswith("/v1beta/"):
        return None
    secret = (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest() if secret else None


async def _peek(request: web.Request, key: ApiKeySettings) -> None:
    """Routes that count nothing (models, the key's own view) and requests
    refused before admission still say where the key stands, as the SDKs
    expect on every answer (read only; nothing when the store fails)."""
    if QUOTA_VIEW in request or not key.limited:
        return
    try:
        view = await request.app[QUOTAS].view(key)
    except StoreUnavailable:
        return
    if view is not None:
        request[QUOTA_VIEW] = view


def check_model(request: web.Request, model: str) -> None:
    """Raise :class:`ModelNotAllowed` (403) when the request's key may not use ``model``."""
    key = request.get(KEY)
    if key is None or key.models is None or model in key.models:
        return
    request.app[METRICS].key_rejections.labels(key.name, "model").inc()
    raise ModelNotAllowed(
        f"The key '{key.name}' may not use the model '{model}'; see GET /v1/models", param="model"
    )


def stash_view(request: web.Request) -> Callable[[QuotaView], None]:
    def seen(view: QuotaView) -> None:
        request[QUOTA_VIEW] = view

    return seen


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the key's rate-limit headers, in the route's dialect."""
    view = request.get(QUOTA_VIEW)
    if view is not None:
        response.headers.update(rate_limit_headers(view, is_anthropic(request)))


def make_store(app: web.Application) -> QuotaStore:
    """Redis when the app has a client (``[state] redis_url``), else in-process."""
    client = app.get(REDIS)
    if client is None:
        return MemoryQuotaStore()
    from .quota.redis_store import RedisQuotaStore

    return RedisQuotaStore(client)


async def quotas_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the quota store, lease renewals, SIGHUP reload."""
    settings = app[SETTINGS]
    quotas = app[QUOTAS] = Quotas(make_store(app), settings.state, app[METRICS])
    keeper = asyncio.create_task(quotas.keep_leases(), name="sluice-lease-keeper")
    loop = asyncio.get_running_loop()
    path = app.get(CONFIG_PATH)
    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_keys, app, path)
    yield
    if path is not None:
        loop.remove_signal_handler(signal.SIGHUP)  # restores SIGHUP's fatal default...
        hangup.ignore()  # ...so: a reload signal during shutdown does nothing
    keeper.cancel()
    await asyncio.gather(keeper, return_exceptions=True)
    await quotas.close()


def reload_keys(app: web.Application, path: str) -> bool:
    """Re-read ``[auth]`` from ``path``; on any error keep the current keys.
    Returns whether the keys were replaced."""
    identity = app[IDENTITY]
    try:
        settings = load_settings(path)
    except ConfigError as err:
        log.error("keys_reload_failed", path=path, error=str(err), kept=len(identity.ring.by_name))
        return False
    before = set(identity.ring.by_name)
    secrets_before = {k.sha256 for k in identity.ring.by_name.values()}
    workers = app.get(WORKERS, 1)
    limited = [k.name for k in settings.auth.keys if k.limited]
    if workers > 1 and limited and app[SETTINGS].state.redis_url is None:
        log.error(
            "keys_reload_failed",
            path=path,
            error=f"keys with limits ({', '.join(limited)}) need [state] redis_url with "
            f"{workers} workers; the running gateway has none (restart to add it)",
            kept=len(before),
        )
        return False
    try:
        identity.replace(settings.auth)
    except ValueError as err:
        log.error("keys_reload_failed", path=path, error=str(err), kept=len(before))
        return False
    after = set(identity.ring.by_name)
    quotas = app.get(QUOTAS)
    if quotas is not None:
        quotas.reconfigure(settings.auth.keys)  # the per-key gauges follow the new keys
    # A revoked secret's generations stop: nobody can cancel them any more.
    revoked = secrets_before - {k.sha256 for k in identity.ring.by_name.values()}
    if revoked and DETACHED in app:
        app[DETACHED].revoke(revoked)
    log.info(
        "keys_reloaded",
        path=path,
        keys=len(after),
        added=sorted(after - before),
        removed=sorted(before - after),
    )
    return True
