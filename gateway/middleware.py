"""Per-request context, HTTP RED metrics, and errors rendered in the client's dialect.

- ``X-Request-Id`` is taken from the request (if sane) or generated, bound to
  the structlog context (aiohttp runs each request in its own task with a
  copied context, so nothing leaks between requests) and echoed back.
- ``sluice_requests_total{route,method,status}`` and
  ``sluice_request_duration_seconds`` are labelled by route *template*.
- A ``GatewayError`` or aiohttp ``HTTPException`` raised before a response is
  committed becomes a JSON error in the route's dialect whose message is the
  error's short sentence plus ``(request id <id>)``; internals (the error's
  ``detail``: exception, address, upstream body) go only to the log. Anything
  else is logged with its traceback and becomes a 500 (never a traceback page).
- Every request gets exactly one summary log line, ``event="request"``:
  ``method``, ``route`` (template), ``status``, ``duration_ms``, ``bytes``
  (response body length, when known), the fields handlers put in
  ``request[SUMMARY]`` (``model``; ``deployment``, the one that served a
  model with deployments; ...), and for an error ``error_type``,
  ``error_code``, ``error`` (the client's message) and ``detail``. The
  ``request_id`` comes from the bound context. ``dropped_params`` lists the
  request fields a dialect translation did not send upstream
  (:mod:`gateway.dialects.dropped`), also in the ``Sluice-Dropped-Params``
  response header (:func:`add_dropped_params`, streamed responses included).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from .api.models import wants_anthropic
from .dialects import dropped
from .dialects.gemini_client import gemini_error_body
from .errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    UnsupportedMediaType,
)
from .otel.hooks import begin_request
from .state import ARRIVAL, DROPPED, METRICS, REQUEST_ID, SUMMARY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("gateway.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
ANTHROPIC_PREFIX = "/v1/messages"
GEMINI_PREFIX = "/v1beta/"
"""Gemini-format routes (:mod:`gateway.api.gemini`): Google's error object."""
MODELS_PREFIX = "/v1/models"


def is_anthropic(request: web.Request) -> bool:
    """Whether the route speaks the Anthropic dialect (errors included): paths
    under ``/v1/messages``, and ``/v1/models`` asked with ``anthropic-version``."""
    if request.path.startswith(ANTHROPIC_PREFIX):
        return True
    return request.path.startswith(MODELS_PREFIX) and wants_anthropic(request)


def served_routes(app: web.Application) -> list[str]:
    """``METHOD /path`` for every route the app serves (HEAD implied by GET)."""
    routes = []
    for route in app.router.routes():
        resource = route.resource
        if route.method != "HEAD" and resource is not None:
            routes.append(f"{route.method} {resource.canonical}")
    return routes


def error_response(request: web.Request, err: GatewayError) -> web.Response:
    """``err`` as a JSON response in the dialect of ``request``'s route; the
    message ends with ``(request id <id>)``, the key to the log line that has
    the error's ``detail``. Records the error in ``request[SUMMARY]``."""
    if is_anthropic(request):
        body = err.anthropic_body()
    elif request.path.startswith(GEMINI_PREFIX):
        body = gemini_error_body(err)
    else:
        body = err.openai_body()
    request_id = request.get(REQUEST_ID)
    if request_id:
        body["error"]["message"] = f"{err.message} (request id {request_id})"
    summary = request.get(SUMMARY)
    if summary is not None:
        summary.update(error_type=err.type, error_code=err.code, error=err.message)
        if err.detail:
            summary["detail"] = err.detail
    return web.Response(
        status=err.http_status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=err.headers(),
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> GatewayError:
    status = exc.status
    asked = f"{request.method} {request.path}"
    if status == 404:
        served = ", ".join(served_routes(request.app))
        return RouteNotFound(f"{asked} is not implemented by Sluice; it serves: {served}")
    if status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return MethodNotAllowed(
            f"{asked} is not implemented; this path accepts {', '.join(allowed) or 'no method'}"
        )
    if status == 413:
        return PayloadTooLarge("Request body too large")
    if status == 415:
        return UnsupportedMediaType(exc.text or "Unsupported media type")
    return InvalidRequest(exc.text or exc.reason, status=status)


def route_of(request: web.Request) -> str:
    """The request's route template (``/v1/streams/{stream_id}``), the ``route`` label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring."""
    request[ARRIVAL] = started = time.perf_counter()
    supplied = request.headers.get("X-Request-Id", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    summary: dict[str, object] = {}
    request[SUMMARY] = summary
    request[DROPPED] = dropped.collect()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    route = route_of(request)
    status = 500
    response: web.StreamResponse | None = None
    trace = begin_request(request)  # OpenTelemetry server span; None when off
    try:
        try:
            response = await handler(request)
        except GatewayError as err:
            response = error_response(request, err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(request, _from_http_exception(request, exc))
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # client closed the request (nginx's convention)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception as exc:
        log.exception("unhandled_error", route=route)
        internal = GatewayError(
            "The gateway failed to handle this request", detail=f"{type(exc).__name__}: {exc}"
        )
        response = error_response(request, internal)
        return response
    finally:
        metrics = request.app[METRICS]
        method = request.method
        elapsed = time.perf_counter() - started
        metrics.requests.labels(route, method, str(status)).inc()
        metrics.request_duration.labels(route, method).observe(elapsed)
        if trace is not None:
            trace.end(status)
        _log_request(request, route, status, elapsed, response, summary)


def _body_bytes(response: web.StreamResponse | None) -> int | None:
    """Bytes of the response body: known for a buffered response, and for a
    stream once it was sent (``body_length`` counts what was written)."""
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return len(response.body)
    if response is not None and response.prepared:
        return response.body_length
    return None


def _log_request(
    request: web.Request,
    route: str,
    status: int,
    elapsed_s: float,
    response: web.StreamResponse | None,
    summary: dict[str, object],
) -> None:
    """The request's one summary line (see the module docstring)."""
    fields: dict[str, object] = {
        "method": request.method,
        "route": route,
        "status": status,
        "duration_ms": round(elapsed_s * 1000, 3),
        "bytes": _body_bytes(response),
    }
    for name, value in summary.items():
        fields.setdefault(name, value)
    dropped_params = request.get(DROPPED)
    if dropped_params:
        fields["dropped_params"] = list(dropped_params)
    emit = log.error if status >= 500 else log.info
    emit("request", **fields)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: echo the request id on every response."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["X-Request-Id"] = request_id


async def add_dropped_params(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: ``Sluice-Dropped-Params: a, b`` when a
    translation dropped request fields (streams are prepared after the
    translation, so their headers carry it too)."""
    names = request.get(DROPPED)
    if names:
        response.headers[dropped.HEADER] = dropped.header_value(names)
