"""OpenAI Responses route: ``POST /v1/responses``.

API reference: https://platform.openai.com/docs/api-reference/responses/create.
Served on every provider through the Chat Completions path
(:mod:`gateway.dialects.responses`, :mod:`gateway.dialects.translate_responses`),
with the same backpressure, timeouts, metrics and admission as
``/v1/chat/completions``. Streaming responses are named SSE events
(``response.created`` ... ``response.completed``); a failure after the first
event ends the stream with ``response.failed``. Stored responses, background
mode, resume and ``previous_response_id`` are not implemented yet: asking for
them is a 400 naming the field.
"""

from __future__ import annotations

from aiohttp import web

from ..dialects.responses import parse_responses_request
from ..state import SETTINGS
from .body import read_json_object
from .chat import ChatCall, serve

RESPONSES_ROUTE = "/v1/responses"


async def create_response(request: web.Request) -> web.StreamResponse:
    """Create a model response, streamed (SSE) or as one Response object."""
    body = await read_json_object(request, request.app[SETTINGS].server)
    parsed = parse_responses_request(body)
    call = ChatCall(
        client="responses",
        route=RESPONSES_ROUTE,
        model=parsed.model,
        stream=parsed.stream,
        include_usage=True,
        body=body,
    )
    return await serve(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post(RESPONSES_ROUTE, create_response)
