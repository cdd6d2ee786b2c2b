"""Anthropic-dialect route: ``POST /v1/messages``.

API reference: https://docs.anthropic.com/en/api/messages. Streaming
responses are named SSE events (``message_start`` ... ``message_stop``,
https://docs.anthropic.com/en/api/messages-streaming); a failure after the
first event ends the stream with ``event: error`` and no ``message_stop``, so
the official SDK raises. Errors before that are JSON
``{"type": "error", "error": {"type", "message"}}`` (the middleware renders
every path under ``/v1/messages`` in this format).

Clients authenticate with ``x-api-key`` (Anthropic's header) or
``Authorization: Bearer`` (checked by :mod:`gateway.auth` when client keys are
configured); client keys are never forwarded: the upstream gets the gateway's
own key.
"""

from __future__ import annotations

from aiohttp import web

from ..dialects.anthropic import parse_messages_request
from ..state import SETTINGS
from .body import request_body
from .chat import ChatCall, serve

MESSAGES_ROUTE = "/v1/messages"


async def create_message(request: web.Request) -> web.StreamResponse:
    """Create a message, streamed (SSE) or as one JSON object."""
    settings = request.app[SETTINGS]
    async with request_body(request, settings.server) as body:
        parsed = parse_messages_request(body)
        call = ChatCall(
            client="anthropic",
            route=MESSAGES_ROUTE,
            model=parsed.model,
            stream=parsed.stream,
            include_usage=True,
            body=body,
        )
        return await serve(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post(MESSAGES_ROUTE, create_message)
