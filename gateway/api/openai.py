"""OpenAI-dialect route: ``POST /v1/chat/completions`` (models: :mod:`.models`).

API reference: https://platform.openai.com/docs/api-reference/chat/create.
Streaming responses are SSE ``data: {chat.completion.chunk}`` events ending in
``data: [DONE]``; a failure after the first event ends the stream with
``data: {"error": {...}}`` and no ``[DONE]``, so the official SDK raises.
"""

from __future__ import annotations

from aiohttp import web

from ..dialects.openai import parse_chat_request
from ..state import SETTINGS
from .body import request_body
from .chat import ChatCall, serve
from .streams import serve_resumable, wants_resume

CHAT_ROUTE = "/v1/chat/completions"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Create a chat completion, streamed (SSE) or as one JSON object."""
    settings = request.app[SETTINGS]
    async with request_body(request, settings.server) as body:
        chat = parse_chat_request(body)
        call = ChatCall(
            client="openai",
            route=CHAT_ROUTE,
            model=chat.model,
            stream=chat.stream,
            include_usage=chat.include_usage,
            body=body,
        )
        if chat.stream and wants_resume(request, chat.model):
            return await serve_resumable(request, call)
        return await serve(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post(CHAT_ROUTE, chat_completions)
