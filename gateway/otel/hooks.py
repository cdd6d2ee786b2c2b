"""The hooks the rest of the gateway calls; each is one context-variable read
when telemetry is off (``[otel] enabled = false``), and imports no SDK.

- :func:`begin_request` (middleware): the request's server span, or None;
- :func:`track_attempts` (``attempts.with_fallbacks``): each upstream attempt
  timed, its client span started (its context goes upstream as ``traceparent``);
- :func:`stream_finished` (the recorder, at record time): the stream's
  :class:`~gateway.outcome.Outcome` ends its spans and records the metrics;
- :func:`call_usage` (``api.chat``): a non-streaming answer's token usage;
- :func:`upstream_headers` (``providers.http.post``): the attempt's
  ``traceparent``/``tracestate`` added to the upstream request's headers.

Nothing here runs per chunk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

if TYPE_CHECKING:
    from ..attempts import Target
    from ..outcome import Outcome
    from .sdk import Telemetry
    from .tracing import RequestTrace

OTEL: web.AppKey[Telemetry] = web.AppKey("sluice_otel")
"""Set on the app only when ``[otel] enabled``."""

CURRENT: ContextVar[RequestTrace | None] = ContextVar("sluice_otel_request", default=None)
"""The request being traced (set by :func:`begin_request` in the request's task;
tasks it starts, an open attempt or a detached generation, inherit it)."""

UPSTREAM_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar(
    "sluice_otel_upstream_headers", default=None
)
"""W3C trace-context headers of the attempt being opened (None: off)."""

T = TypeVar("T")


def begin_request(request: web.Request) -> RequestTrace | None:
    """Start tracing ``request`` (None when telemetry is off, and for the
    operator's probes and scrapes: :data:`.sdk.UNTRACED`). The caller ends
    it with :meth:`~gateway.otel.tracing.RequestTrace.end`."""
    telemetry = request.app.get(OTEL)
    return None if telemetry is None else telemetry.begin(request)


def track_attempts(
    attempt: Callable[[Target], Awaitable[T]],
) -> Callable[[Target], Awaitable[T]]:
    """``attempt``, timed and spanned per call when the request is traced;
    ``attempt`` itself otherwise."""
    trace = CURRENT.get()
    return attempt if trace is None else trace.tracked(attempt)


def stream_finished(outcome: Outcome) -> None:
    """A stream of the traced request ended with ``outcome``."""
    trace = CURRENT.get()
    if trace is not None:
        trace.stream_finished(outcome)


def call_usage(input_tokens: int | None, output_tokens: int | None) -> None:
    """A non-streaming call of the traced request answered with this usage."""
    trace = CURRENT.get()
    if trace is not None:
        trace.usage = (input_tokens, output_tokens)


def upstream_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` plus the current attempt's ``traceparent`` (and ``tracestate``)."""
    extra = UPSTREAM_HEADERS.get()
    return headers if extra is None else {**headers, **extra}
