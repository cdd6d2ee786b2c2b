"""Typed application state (``web.AppKey``s) shared by routes and middleware."""

from __future__ import annotations

from aiohttp import web

from .admission import Admission
from .config import Settings
from .detached import Detached
from .metrics import Metrics
from .providers.base import Provider
from .store.base import StreamStore

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
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
