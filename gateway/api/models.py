"""Model routes: ``GET /v1/models`` and ``GET /v1/models/{model_id}``, in the
dialect of the caller.

Without an ``anthropic-version`` header the shapes are OpenAI's
(https://platform.openai.com/docs/api-reference/models): a list
``{"object": "list", "data": [{"id", "object": "model", "created",
"owned_by"}]}`` and one model object. With it (every Anthropic SDK request
carries one) they are Anthropic's
(https://docs.anthropic.com/en/api/models-list): a page ``{"data": [{"type":
"model", "id", "display_name", "created_at"}], "has_more": false, "first_id",
"last_id"}`` holding every configured model, and one ``ModelInfo``. An unknown
id is :class:`~gateway.errors.ModelNotFound` (404 ``model_not_found``).
A request with a client key sees only the models its ``models`` allow-list
names (another model's id is 404 too, as for a model that does not exist).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..config import ModelSettings
from ..errors import ModelNotFound
from ..state import KEY, SETTINGS

MODELS_ROUTE = "/v1/models"
MODEL_ROUTE = "/v1/models/{model_id:.+}"
"""Model names may contain ``/`` (``meta-llama/Llama-3.1-8B``)."""
ANTHROPIC_VERSION = "anthropic-version"
_EPOCH = "1970-01-01T00:00:00Z"
"""``created_at`` of every model: the gateway knows no release dates (OpenAI's ``created`` is 0)."""


def wants_anthropic(request: web.Request) -> bool:
    """Whether a models request came from an Anthropic client."""
    return ANTHROPIC_VERSION in request.headers


def _openai(model: ModelSettings) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": f"sluice:{model.provider}",
    }


def _anthropic(model: ModelSettings) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model.name,
        "display_name": model.name,
        "created_at": _EPOCH,
        "lifecycle": "active",
    }


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _visible(request: web.Request) -> list[ModelSettings]:
    """The configured models the request's key may use (all, without a key
    or without an allow-list)."""
    models = request.app[SETTINGS].models
    key = request.get(KEY)
    if key is None or key.models is None:
        return list(models)
    return [m for m in models if m.name in key.models]


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every configured model the key may use, one page."""
    models = _visible(request)
    if wants_anthropic(request):
        data = [_anthropic(m) for m in models]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return _json({"object": "list", "data": [_openai(m) for m in models]})


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model_id}``. Raises :class:`ModelNotFound` (404)."""
    name = request.match_info["model_id"]
    model = next((m for m in _visible(request) if m.name == name), None)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist; see GET /v1/models")
    return _json(_anthropic(model) if wants_anthropic(request) else _openai(model))


def add_routes(app: web.Application) -> None:
    app.router.add_get(MODELS_ROUTE, list_models)
    app.router.add_get(MODEL_ROUTE, retrieve_model)
