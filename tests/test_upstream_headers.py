"""A model's ``headers`` and ``query`` tables: sent on every upstream request
(streamed or not) by the OpenAI-compatible and Anthropic providers, values
from the environment with ``{ env = "NAME" }`` (unset: a configuration
error naming the key), never logged; warned about over plain HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponseError, RequestInfo, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import ConfigError, load_settings
from gateway.key_exposure import key_exposures
from gateway.providers.http import error_for_exception
from tests.conftest import LogLines
from tests.fake_anthropic import FakeAnthropic, anthropic_model, text_events, wire
from tests.fake_azure import API_VERSION, DEPLOYMENT, KEY, FakeAzure, text_stream
from tests.fakes import Script
from tests.helpers import GatewayFactory, sdk, settings_from

MESSAGES: Any = [{"role": "user", "content": "hi"}]
Seen = tuple[str, dict[str, str], dict[str, str]]


def _capture(app: web.Application) -> list[Seen]:
    """Path, query and headers of every request ``app`` gets (before it starts)."""
    seen: list[Seen] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.path, dict(request.query), dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(record)
    return seen


async def test_classic_azure_as_an_openai_compatible_upstream(
    gateway: GatewayFactory, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's first 404: Azure's ``api-key`` header and ``api-version``
    query on a plain ``provider = "openai"`` model, streamed and not."""
    monkeypatch.setenv("AZ_SECRET_KEY", KEY)
    fake_azure.script = Script(events=text_stream(["Hel", "lo"]))
    model = {
        "name": "az", "provider": "openai", "api_key_env": "",
        "base_url": f"{fake_azure.endpoint}/openai/deployments/{DEPLOYMENT}",
        "headers": {"api-key": {"env": "AZ_SECRET_KEY"}, "X-Team": "search"},
        "query": {"api-version": API_VERSION},
    }  # fmt: skip
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="az", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
        done = await oa.chat.completions.create(model="az", messages=MESSAGES)
    # Azure's asynchronous-filter chunk has a choice without ``delta``.
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and
                   c.choices[0].delta)  # fmt: skip
    assert text == "Hello" and done.choices[0].message.content == "hi"
    for seen in fake_azure.seen:
        assert seen.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
        assert seen.query == {"api-version": API_VERSION}
        assert seen.headers["api-key"] == KEY and seen.headers["X-Team"] == "search"
        assert "Authorization" not in seen.headers
    assert len(fake_azure.seen) == 2


async def test_anthropic_upstream_gets_headers_and_query(
    gateway: GatewayFactory, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TOKEN", "gw-secret")
    fake = FakeAnthropic()
    seen = _capture(fake.app)
    server: TestServer = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url(""))
    fake.script = Script(events=wire(text_events(["Hel", "lo"])))
    model = anthropic_model(
        fake, headers={"anthropic-beta": "b1", "X-Gateway-Token": {"env": "GW_TOKEN"}},
        query={"route": "eu", "token": {"env": "GW_TOKEN"}},
    )  # fmt: skip
    client = await gateway(models=[model])
    async with sdk(client) as oa:
        stream = await oa.chat.completions.create(model="claude", messages=MESSAGES, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await oa.chat.completions.create(model="claude", messages=MESSAGES)
    assert len(seen) == 2
    for path, query, headers in seen:
        assert path == "/v1/messages" and query == {"route": "eu", "token": "gw-secret"}
        assert headers["anthropic-beta"] == "b1" and headers["X-Gateway-Token"] == "gw-secret"
        assert headers["x-api-key"] == "test-anthropic-key"


async def test_values_are_never_logged(
    gateway: GatewayFactory, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch,
    log_lines: LogLines,
) -> None:  # fmt: skip
    """An upstream refusal logs the URL and body, not the header or query values."""
    monkeypatch.setenv("AZ_SECRET_KEY", "wrong-key-31337")
    model = {
        "name": "az", "provider": "openai", "api_key_env": "",
        "base_url": f"{fake_azure.endpoint}/openai/v1",
        "headers": {"api-key": {"env": "AZ_SECRET_KEY"}},
        "query": {"sig": {"env": "AZ_SECRET_KEY"}, "plain": "visible-value-4242"},
    }  # fmt: skip
    client = await gateway(models=[model])
    resp = await client.post("/v1/chat/completions", json={"model": "az", "messages": MESSAGES})
    assert resp.status == 502  # the upstream's 401: the gateway's configuration
    text = str(log_lines())
    assert "/openai/v1/chat/completions" in text  # the failure is logged, with its URL
    assert "wrong-key-31337" not in text and "visible-value-4242" not in text


def test_an_unset_variable_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text(
        '[[models]]\nname = "a"\nprovider = "openai"\n'
        'headers = { "X-Ok" = "1", "X-Key" = { env = "SLUICE_TEST_UNSET_VAR" } }\n'
        'query = { key = { env = "SLUICE_TEST_UNSET_VAR2" } }\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.errors == (
        "models[0].headers.X-Key: the environment variable SLUICE_TEST_UNSET_VAR is unset or empty",
        "models[0].query.key: the environment variable SLUICE_TEST_UNSET_VAR2 is unset or empty",
    )


def test_an_unset_variable_in_a_deployment_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text(
        '[[models]]\nname = "a"\nprovider = "openai"\n'
        '[[models.deployments]]\nname = "east"\nbase_url = "https://east.example/v1"\n'
        'headers = { "X-Key" = { env = "SLUICE_TEST_UNSET_VAR3" } }\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.errors == (
        "models[0].deployments[0].headers.X-Key: "
        "the environment variable SLUICE_TEST_UNSET_VAR3 is unset or empty",
    )


def test_exposures_of_header_values_and_azure_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_TOKEN", "t")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    settings = settings_from(models=[
        {"name": "lan", "provider": "openai", "api_key_env": "",
         "base_url": "http://10.0.0.5:8000/v1", "headers": {"X-Token": {"env": "TEAM_TOKEN"}}},
        {"name": "az", "provider": "azure", "base_url": "https://res.openai.azure.com"},
        {"name": "azproxy", "provider": "azure", "base_url": "https://proxy.example.com"},
    ])  # fmt: skip
    found = [(e["event"], e["model"], e["key_env"]) for e in key_exposures(settings)]
    assert found == [
        ("upstream_default_key_to_custom_host", "azproxy", "AZURE_OPENAI_API_KEY"),
        ("upstream_key_over_plain_http", "lan", "TEAM_TOKEN"),
    ]


def test_an_invalid_response_error_leaves_the_query_out() -> None:
    """aiohttp's ClientResponseError says its URL, query included; the detail
    (logged) does not."""
    url = URL("http://up.example/v1/chat/completions?key=query-secret-77")
    info = RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    err = error_for_exception(ClientResponseError(info, (), status=400, message="Bad status"))
    assert "query-secret-77" not in f"{err.message} {err.detail}"
    assert "Bad status" in (err.detail or "")
