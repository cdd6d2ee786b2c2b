"""CORS for browsers: pages on the origins in ``[server] cors_origins`` may
call the API with ``fetch`` (Fetch Standard, "CORS protocol",
https://fetch.spec.whatwg.org/#http-cors-protocol).

- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from a
  listed origin gets 204 with the methods and headers the clients send; from
  any other origin, 403 and no CORS headers (the browser refuses).
- Every other response to a listed origin carries
  ``Access-Control-Allow-Origin`` (the origin itself) and exposes the headers
  a web app reads: the request id, the stream id, the rate-limit headers and
  ``Retry-After``. Streams too: the headers are added when the response is
  prepared.
- With any origin configured, *every* response carries ``Vary: Origin``
  (allowed origin, other origin, or none: each may be answered differently),
  so a shared cache keeps them apart (Fetch Standard, "CORS protocol and
  HTTP caches").
- ``"*"`` in the list allows every origin. Credentials (cookies) are never
  allowed: clients authenticate with a key header.

Preflights are answered before authentication (browsers send them without
the ``Authorization`` header).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .state import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_ORIGIN = web.RequestKey("cors_origin", str)
"""The request's allowed ``Origin`` (set only when it is allowed)."""

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, x-api-key, anthropic-version, Last-Event-ID, "
    "Sluice-Resumable, X-Request-Id, "
    "x-goog-api-key, "  # a Gemini-format client's key (gateway/api/gemini.py)
    "Sluice-Session"  # the affinity routing key's default header (gateway/routing)
)
EXPOSE_HEADERS = (
    "X-Request-Id, Sluice-Stream-Id, Sluice-Dropped-Params, Retry-After, "
    "x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, "
    "anthropic-ratelimit-requests-limit, anthropic-ratelimit-requests-remaining, "
    "anthropic-ratelimit-requests-reset, anthropic-ratelimit-tokens-limit, "
    "anthropic-ratelimit-tokens-remaining, anthropic-ratelimit-tokens-reset"
)
MAX_AGE_S = 600


def _allowed(request: web.Request, origin: str) -> bool:
    origins = request.app[SETTINGS].server.cors_origins
    return "*" in origins or origin in origins


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring."""
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    allowed = _allowed(request, origin)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return web.Response(status=403, text="origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_S),
                "Vary": "Origin",
            },
        )
    if allowed:
        request[CORS_ORIGIN] = origin
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the CORS headers of an allowed origin; and
    ``Vary: Origin`` on every response whenever origins are configured, since
    any of them may differ by ``Origin`` (a cache must not serve one origin's
    answer, e.g. ``/sluice.js``'s ``public, max-age=300``, to another)."""
    if not request.app[SETTINGS].server.cors_origins:
        return  # CORS changes nothing: no header depends on Origin
    vary_origin(response)
    origin = request.get(CORS_ORIGIN)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def vary_origin(response: web.StreamResponse) -> None:
    """Add ``Origin`` to the response's ``Vary`` (kept once, others kept)."""
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in {v.strip().lower() for v in vary.split(",")}:
        response.headers["Vary"] = f"{vary}, Origin"
