"""OpenAI-dialect routes: ``POST /v1/chat/completions``, ``GET /v1/models``.

API reference: https://platform.openai.com/docs/api-reference/chat/create.
Streaming responses are SSE ``data: {chat.completion.chunk}`` events ending in
``data: [DONE]``; a failure after the first event ends the stream with
``data: {"error": {...}}`` and no ``[DONE]``, so the official SDK raises.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from ..dialects.openai import OpenAIPassthrough, parse_chat_request, usage_of
from ..errors import ModelNotFound
from ..recorder import StreamRecorder
from ..relay import StreamJob, relay
from ..state import ARRIVAL, METRICS, PROVIDERS, SETTINGS
from ..timing import StreamClock
from .body import read_json_object

CHAT_ROUTE = "/v1/chat/completions"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Create a chat completion, streamed (SSE) or as one JSON object."""
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.server.max_body_bytes)
    chat = parse_chat_request(body)
    model = settings.model(chat.model)
    if model is None:
        raise ModelNotFound(
            f"The model '{chat.model}' does not exist; see GET /v1/models", param="model"
        )
    provider = request.app[PROVIDERS][model.name]
    metrics = request.app[METRICS]
    if not chat.stream:
        payload = await provider.complete(body)
        usage = usage_of(payload)
        if usage is not None:
            labels = (model.name, provider.kind)
            if usage.output_tokens:
                metrics.output_tokens.labels(*labels).inc(usage.output_tokens)
            if usage.input_tokens:
                metrics.input_tokens.labels(*labels).inc(usage.input_tokens)
        return web.Response(body=orjson.dumps(payload), content_type="application/json")
    job = StreamJob(
        request=request,
        provider=provider,
        body=body,
        encoder=OpenAIPassthrough(include_usage=chat.include_usage),
        settings=settings.stream,
        recorder=StreamRecorder(
            metrics, model=model.name, provider=provider.kind, route=CHAT_ROUTE
        ),
        clock=StreamClock(request.get(ARRIVAL, time.perf_counter())),
        model=model.name,
    )
    return await relay(job)


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
