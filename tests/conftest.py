"""Shared fixtures: the gateway on a real socket, fake upstreams, aioresponses shim."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import orjson
import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from gateway.app import create_app, server_options
from gateway.log import configure_logging
from gateway.metrics import Metrics
from tests.fake_anthropic import FakeAnthropic
from tests.fake_azure import FakeAzure
from tests.fake_gemini import FakeGemini, start_fake_gemini
from tests.fakes import FakeOpenAI
from tests.helpers import SIM_FAST, GatewayFactory, settings_from


class _ShimResponse(ClientResponse):
    """aioresponses 0.7.9 vs aiohttp 3.14: ``stream_writer`` became required
    (aioresponses issue #289); default it to an object with ``output_size``."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def aioresponses_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioresponses.core, "ClientResponse", _ShimResponse)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry())


@pytest.fixture
async def gateway(aiohttp_client: Any, metrics: Metrics) -> GatewayFactory:
    """``await gateway(models=[...], stream={...})`` -> a TestClient on a real socket."""

    async def make(**sections: Any) -> TestClient[Any, Any]:
        sections.setdefault("models", [SIM_FAST])
        settings = settings_from(**sections)
        app = create_app(settings, metrics=metrics)
        # TestServer drops constructor kwargs; runner options go to
        # start_server (which already sets handler_cancellation=True).
        server = TestServer(app)
        options = server_options(settings)
        assert options.pop("handler_cancellation") is True
        await server.start_server(**options)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    return make


async def start_fake_openai(aiohttp_server: Any) -> FakeOpenAI:
    """A :class:`FakeOpenAI` serving on loopback, ``base_url`` set."""
    fake = FakeOpenAI()
    server: TestServer = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url("/v1"))
    return fake


@pytest.fixture
async def fake_openai(aiohttp_server: Any) -> FakeOpenAI:
    return await start_fake_openai(aiohttp_server)


@pytest.fixture
async def second_fake(aiohttp_server: Any) -> FakeOpenAI:
    """Another fake OpenAI upstream, e.g. for fallbacks."""
    return await start_fake_openai(aiohttp_server)


@pytest.fixture
async def fake_anthropic(aiohttp_server: Any) -> FakeAnthropic:
    """A fake Anthropic Messages upstream on loopback (tests/fake_anthropic.py)."""
    fake = FakeAnthropic()
    server: TestServer = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url(""))
    return fake


@pytest.fixture
async def fake_gemini(aiohttp_server: Any) -> FakeGemini:
    """A fake Gemini API upstream on loopback (tests/fake_gemini.py)."""
    return await start_fake_gemini(aiohttp_server)


@pytest.fixture(autouse=True)
def upstream_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remote models need their key variable set (or 503 upstream_not_configured);
    the fakes accept any key."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key")
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")


LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The gateway's JSON log lines (``configure_logging``) as parsed dicts."""
    buffer = io.BytesIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("debug", buffer)
    structlog.configure(cache_logger_on_first_use=False)  # later tests reconfigure

    def lines() -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line]

    yield lines
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config sections choosing the stream store (and quota state): memory, or
    a real ``redis-server`` (``[state] redis_url``); a test taking it runs on both."""
    if request.param == "memory":
        return {}
    return {"state": {"redis_url": request.getfixturevalue("redis_server").url}}


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[Any]:
    """A running :class:`tests.redis_server.RedisServer` (``.url``, ``.stop()``, ``.start()``)."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_model() -> Iterator[Any]:
    """llama.cpp's server with SmolLM2-135M-Instruct on a free port, started
    once per session (a :class:`tests.real_model.RealModel`)."""
    from tests.real_model import RealModel

    with RealModel.started() as model:
        yield model


@pytest.fixture
async def fake_azure(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeAzure:
    """A fake Azure OpenAI resource on loopback (tests/fake_azure.py), its
    key in ``AZURE_OPENAI_API_KEY``."""
    fake = FakeAzure()
    server: TestServer = await aiohttp_server(fake.app)
    fake.endpoint = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake.key)
    return fake
