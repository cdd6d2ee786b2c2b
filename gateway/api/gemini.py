"""Gemini-format routes: ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``
and ``POST /v1beta/models/{model}:generateContent``, served from any provider,
and ``GET /v1beta/models`` (``/{model}``): the configured models as Gemini
``Model`` objects (https://ai.google.dev/api/models).

API reference: https://ai.google.dev/api/generate-content. The body (a
``GenerateContentRequest``) is translated to Chat Completions
(:func:`~gateway.dialects.gemini_request.chat_from_gemini`) and served like
``/v1/chat/completions``; answers are written back as the Gemini API writes
them (:mod:`gateway.dialects.gemini_client`): SSE ``data:`` events of
``GenerateContentResponse`` objects (only ``alt=sse`` is served: Google's
default, a streamed JSON array, is not), or one object. Errors are Google's
``{"error": {"code", "message", "status"}}`` (the middleware renders every
path under ``/v1beta/`` so); a failure after the first event ends the stream
with that object as its last event. So Google's ``google-genai`` SDK with
``http_options={"base_url": <sluice>}`` keeps its code.

Clients authenticate with ``x-goog-api-key`` (what ``google-genai`` sends) or
``?key=`` (checked by :mod:`gateway.auth`), or the usual headers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..dialects.gemini_client_request import chat_from_gemini
from ..dialects.openai import parse_chat_request
from ..errors import InvalidRequest, ModelNotFound
from ..state import KEY, SETTINGS
from .body import read_json_object
from .chat import ChatCall, serve

GEMINI_PREFIX = "/v1beta/"
STREAM_ROUTE = "/v1beta/models/{model}:streamGenerateContent"
WHOLE_ROUTE = "/v1beta/models/{model}:generateContent"
MODELS_ROUTE = "/v1beta/models"
MODEL_ROUTE = "/v1beta/models/{model}"
METHODS = ("generateContent", "streamGenerateContent")


async def stream_generate_content(request: web.Request) -> web.StreamResponse:
    """``streamGenerateContent?alt=sse``: an SSE stream of responses."""
    if request.query.get("alt") != "sse":
        raise InvalidRequest(
            "Only alt=sse is served for streamGenerateContent (an SSE stream)", param="alt"
        )
    return await _serve(request, STREAM_ROUTE, stream=True)


async def generate_content(request: web.Request) -> web.StreamResponse:
    """``generateContent``: one ``GenerateContentResponse``."""
    return await _serve(request, WHOLE_ROUTE, stream=False)


async def _serve(request: web.Request, route: str, *, stream: bool) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.server)
    model = request.match_info["model"].removeprefix("models/")
    chat = chat_from_gemini(body, model, stream)
    parse_chat_request(chat)  # the translated body meets the chat route's rules
    call = ChatCall(
        client="gemini", route=route, model=model, stream=stream, include_usage=True, body=chat
    )
    return await serve(request, call)


def _model(name: str) -> dict[str, Any]:
    """A Gemini ``Model`` (https://ai.google.dev/api/models#Model) for a configured model."""
    return {"name": f"models/{name}", "displayName": name, "supportedGenerationMethods": METHODS}


def _visible(request: web.Request) -> list[str]:
    """The configured models the request's key may use (all without a key)."""
    key = request.get(KEY)
    names = [m.name for m in request.app[SETTINGS].models]
    return names if key is None or key.models is None else [n for n in names if n in key.models]


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1beta/models``: every model the key may use, one page
    (https://ai.google.dev/api/models#method:-models.list)."""
    return web.json_response({"models": [_model(n) for n in _visible(request)]})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1beta/models/{model}``. Raises :class:`ModelNotFound` (404)."""
    name = request.match_info["model"].removeprefix("models/")
    if name not in _visible(request):
        raise ModelNotFound(f"The model '{name}' does not exist; see GET /v1beta/models")
    return web.json_response(_model(name))


def add_routes(app: web.Application) -> None:
    app.router.add_post(STREAM_ROUTE, stream_generate_content)
    app.router.add_post(WHOLE_ROUTE, generate_content)
    app.router.add_get(MODELS_ROUTE, list_models)
    app.router.add_get(MODEL_ROUTE, get_model)
