"""Routes an operator and an SDK discover: the models endpoints in both
dialects, and what an unknown route or method says."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.fake_anthropic import anthropic_sdk
from tests.helpers import SIM_FAST, GatewayFactory, sdk

MODELS = [SIM_FAST, {**SIM_FAST, "name": "org/other-model"}]


async def test_openai_sdk_lists_and_retrieves_models(gateway: GatewayFactory) -> None:
    client = await gateway(models=MODELS)
    async with sdk(client) as oa:
        listed = [m.id async for m in oa.models.list()]
        assert listed == ["sim", "org/other-model"]
        model = await oa.models.retrieve("sim")
        assert (model.id, model.object, model.owned_by) == ("sim", "model", "sluice:sim")
        assert (await oa.models.retrieve("org/other-model")).id == "org/other-model"
        with pytest.raises(openai.NotFoundError) as info:
            await oa.models.retrieve("nope")
    assert info.value.code == "model_not_found"


async def test_anthropic_sdk_lists_and_retrieves_models(gateway: GatewayFactory) -> None:
    client = await gateway(models=MODELS)
    async with anthropic_sdk(client) as an:
        page = await an.models.list()
        assert [m.id for m in page.data] == ["sim", "org/other-model"]
        assert [m.type for m in page.data] == ["model", "model"]
        assert (page.has_more, page.first_id, page.last_id) == (False, "sim", "org/other-model")
        assert [m.id async for m in an.models.list()] == ["sim", "org/other-model"]
        model = await an.models.retrieve("sim")
        assert (model.id, model.display_name, model.created_at.year) == ("sim", "sim", 1970)
        with pytest.raises(anthropic.NotFoundError) as info:
            await an.models.retrieve("nope")
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_unknown_route_names_itself_and_lists_the_routes(gateway: GatewayFactory) -> None:
    client = await gateway()
    resp = await client.post("/v1/completions", json={})
    assert resp.status == 404
    message = (await resp.json())["error"]["message"]
    assert message.startswith("POST /v1/completions is not implemented by Sluice; it serves: ")
    for route in (
        "POST /v1/chat/completions",
        "POST /v1/messages",
        "GET /v1/models",
        "GET /v1/models/{model_id}",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ):
        assert route in message  # fmt: skip

    resp = await client.get("/v1/chat/completions")
    assert resp.status == 405
    message = (await resp.json())["error"]["message"]
    assert message.startswith("GET /v1/chat/completions is not implemented; this path accepts POST")
