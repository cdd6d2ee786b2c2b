"""OpenAI-dialect routes: ``POST /v1/chat/completions``, ``GET /v1/models``.

API reference: https://platform.openai.com/docs/api-reference/chat/create.
Streaming responses are SSE ``data: {chat.completion.chunk}`` events ending in
``data: [DONE]``; a failure after the first event ends the stream with
``data: {"error": {...}}`` and no ``[DONE]``, so the official SDK raises.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from ..dialects.openai import parse_chat_request
from ..state import SETTINGS
from .body import read_json_object
from .chat import ChatCall, serve

CHAT_ROUTE = "/v1/chat/completions"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Create a chat completion, streamed (SSE) or as one JSON object."""
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.server)
    chat = parse_chat_request(body)
    call = ChatCall(
        client="openai",
        route=CHAT_ROUTE,
        model=chat.model,
        stream=chat.stream,
        include_usage=chat.include_usage,
        body=body,
    )
    return await serve(request, call)


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the configured model names, OpenAI list shape."""
    settings = request.app[SETTINGS]
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": f"sluice:{m.provider}"}
        for m in settings.models
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(CHAT_ROUTE, chat_completions)
    app.router.add_get("/v1/models", list_models)
