"""Typed application state (``web.AppKey``s) shared by routes and middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .admission import Admission
from .config import Settings
from .config_auth import ApiKeySettings
from .cost.prices import PriceBook
from .cost.spend import SpendMeter
from .detached import Detached
from .keys import Identity
from .metrics import Metrics
from .providers.base import Provider
from .quota.limiter import Quotas, QuotaView
from .store.base import StreamStore

if TYPE_CHECKING:  # redis is imported only when [state] redis_url is set
    import redis.asyncio as aioredis

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
NATIVE_RESPONSES = web.AppKey("native_responses", dict[str, Provider])
"""Models with ``responses_api = "native"``: their ``/responses`` provider."""
ADMISSION = web.AppKey("admission", Admission)
STREAM_STORE = web.AppKey("stream_store", StreamStore)
DETACHED = web.AppKey("detached", Detached)
ARRIVAL = web.RequestKey("arrival", float)
"""``time.perf_counter()`` when the middleware first saw the request."""
REQUEST_ID = web.RequestKey("request_id", str)
"""The request id bound to logs and echoed in ``X-Request-Id``."""
SUMMARY = web.RequestKey("summary", dict[str, object])
"""Fields for the request's one summary log line (``event="request"``, written
by the middleware): handlers add what they know (the chat path: ``model``)."""
DROPPED = web.RequestKey("dropped_params", list[str])
"""Request fields a dialect translation did not send upstream
(:mod:`gateway.dialects.dropped`): the ``Sluice-Dropped-Params`` header and
``dropped_params`` on the summary line."""
IDENTITY = web.AppKey("identity", Identity)
"""The configured client keys (``[auth]``); its ring is swapped on SIGHUP."""
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis")
"""The one Redis client (pool) of this process when ``[state] redis_url`` is
set (:func:`gateway.redisconn.connect`); every Redis-backed store uses it."""
QUOTAS = web.AppKey("quotas", Quotas)
"""Per-key admission (set up on startup: the store may be Redis)."""
CONFIG_PATH = web.AppKey("config_path", str)
"""The config file the process was started with (SIGHUP re-reads its [auth])."""
WORKERS = web.AppKey("workers", int)
"""How many worker processes serve the port (``--workers``; absent: one)."""
KEY = web.RequestKey("key", ApiKeySettings)
"""The client key a request authenticated with (absent: anonymous)."""
PRICES = web.AppKey("prices", PriceBook)
"""Each configured model's price, resolved once at start-up (:mod:`gateway.cost`)."""
SPEND_METER = web.AppKey("spend_meter", SpendMeter)
"""``sluice_spend_usd_total``'s children, resolved once per (key, model)."""
QUOTA_VIEW = web.RequestKey("quota_view", QuotaView)
"""The key's counters as of this request, for the rate-limit headers."""
