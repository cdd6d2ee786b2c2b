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
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..config import ModelSettings
from ..errors import ModelNotFound
from ..state import SETTINGS

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


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every configured model, one page."""
    models = request.app[SETTINGS].models
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
    model = request.app[SETTINGS].model(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist; see GET /v1/models")
    return _json(_anthropic(model) if wants_anthropic(request) else _openai(model))


def add_routes(app: web.Application) -> None:
    app.router.add_get(MODELS_ROUTE, list_models)
    app.router.add_get(MODEL_ROUTE, retrieve_model)
