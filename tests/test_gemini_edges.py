"""The Gemini provider's edges: a stalled client pauses the Gemini upstream
(bytes read bounded, as tests/test_backpressure.py measures for OpenAI),
and Vertex AI: its URL, its token source (a fake credentials object: no
Google account is reachable from here) and a stream authenticated with it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.config import GeminiModel
from gateway.errors import UpstreamAuthError
from gateway.key_exposure import key_exposures
from gateway.providers import gemini_vertex
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_vertex import VertexTokens, vertex_base_url
from gateway.providers.http import UpstreamSessions
from gateway.state import ADMISSION
from tests.fake_gemini import FakeGemini, gemini_model, gevent, response, text
from tests.fakes import Script
from tests.helpers import GatewayFactory, sdk, settings_from, upstream_plateau
from tests.rawclient import RawSSEClient
from tests.test_gemini_upstream import MESSAGES


async def test_stalled_client_pauses_the_gemini_upstream(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script = Script(
        events=[gevent(response([text("first")]))], then="flood", sndbuf=16384
    )
    client = await gateway(
        models=[gemini_model(fake_gemini)], stream={"downstream_buffer_bytes": 65536}
    )
    body = {"model": "gem", "stream": True, "messages": MESSAGES}
    raw = await RawSSEClient.open(
        client.server.host, client.server.port, "/v1/chat/completions", body
    )  # type: ignore[arg-type]
    try:
        assert raw.status == 200
        await raw.events(limit=1)
        ahead = await upstream_plateau(fake_gemini)
        print(f"\ngemini upstream got {ahead} bytes out ahead of a stalled client")
        # The same bound as OpenAI's (tests/test_backpressure.py): the
        # per-connection buffer plus the kernel queues on both hops.
        assert 0 < ahead < 1 << 20
    finally:
        raw.close()
    for _ in range(200):  # the client left: the upstream connection is closed
        if fake_gemini.records[0].closed_at is not None:
            break
        await asyncio.sleep(0.05)
    assert fake_gemini.records[0].closed_at is not None


# -- Vertex AI ---------------------------------------------------------------------


class FakeCredentials:
    """``google.auth.credentials.Credentials`` as the token source uses it."""

    def __init__(self, fail: bool = False) -> None:
        self.token: str | None = None
        self.refreshes = 0
        self.fail = fail

    @property
    def valid(self) -> bool:
        return self.token is not None

    def refresh(self, request: Any) -> None:
        if self.fail:
            raise RuntimeError("metadata server unreachable")
        self.refreshes += 1
        self.token = f"ya29.token-{self.refreshes}"


async def test_vertex_urls() -> None:
    assert vertex_base_url("proj", "europe-west4") == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj"
        "/locations/europe-west4/publishers/google"
    )
    assert vertex_base_url("proj", "global").startswith("https://aiplatform.googleapis.com/v1/")
    model = GeminiModel(name="g", provider="gemini", upstream_model="gemini-2.5-flash",
                        vertex_project="proj", vertex_location="us-east5")  # fmt: skip
    sessions = UpstreamSessions()
    provider = GeminiProvider(model, sessions, tokens=VertexTokens(FakeCredentials()))
    await sessions.aclose()
    assert provider.stream_url == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/proj/locations/us-east5"
        "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert provider.url.endswith("/models/gemini-2.5-flash:generateContent")
    assert model.missing_key_env() is None and model.key_env == ""  # Google credentials
    with_host = model.model_copy(update={"base_url": "https://vertex-proxy.example/v1"})
    assert key_exposures(settings_from(models=[with_host.model_dump()])) == []


async def test_vertex_token_source_refreshes_once_and_maps_failures() -> None:
    credentials = FakeCredentials()
    tokens = VertexTokens(credentials)
    got = await asyncio.gather(*(tokens.token() for _ in range(5)))
    assert got == ["ya29.token-1"] * 5 and credentials.refreshes == 1
    credentials.token = None  # expired
    assert await tokens.token() == "ya29.token-2"
    with pytest.raises(UpstreamAuthError, match="Google credentials") as info:
        await VertexTokens(FakeCredentials(fail=True)).token()
    assert "metadata server unreachable" in (info.value.detail or "")


async def test_vertex_stream_carries_the_bearer_token(
    gateway: GatewayFactory, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = FakeCredentials()
    monkeypatch.setattr(gemini_vertex, "_default_credentials", lambda: credentials)
    monkeypatch.setattr(gemini_vertex, "_transport_request", lambda: None)
    monkeypatch.delenv("GEMINI_API_KEY")
    client = await gateway(models=[gemini_model(fake_gemini, vertex_project="proj")])
    async with sdk(client) as oc:
        stream = await oc.chat.completions.create(model="gem", messages=MESSAGES, stream=True)
        content = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert content == "hi"
    headers = fake_gemini.headers[0]
    assert headers["authorization"] == "Bearer ya29.token-1"
    assert "x-goog-api-key" not in headers


async def test_a_client_that_leaves_before_the_first_token_closes_the_upstream(
    gateway: GatewayFactory, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script = Script(events=[], then="hang")
    client = await gateway(models=[gemini_model(fake_gemini)])
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    request = asyncio.ensure_future(
        client.post("/v1beta/models/gem:streamGenerateContent?alt=sse", json=body)
    )
    for _ in range(200):  # the upstream request is open
        if fake_gemini.records:
            break
        await asyncio.sleep(0.02)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    for _ in range(200):
        if fake_gemini.records[0].closed_at is not None and not client.app[ADMISSION].open_streams:
            break
        await asyncio.sleep(0.02)
    assert fake_gemini.records[0].closed_at is not None
    assert client.app[ADMISSION].open_streams == 0


async def test_a_caller_cancelled_during_a_refresh_leaves_it_to_the_next() -> None:
    credentials = SlowCredentials()
    tokens = VertexTokens(credentials)
    first = asyncio.ensure_future(tokens.token())
    await asyncio.to_thread(credentials.started.wait, 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(tokens.token())
    for _ in range(10):  # the second caller gets as far as it can (without a refresh of
        await asyncio.sleep(0)  # its own, it waits for the running one)
    credentials.go.set()
    assert await second == "ya29.token-1" and credentials.refreshes == 1


class SlowCredentials(FakeCredentials):
    """A refresh that waits for the test (in google-auth's worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.go = threading.Event(), threading.Event()

    def refresh(self, request: Any) -> None:
        self.started.set()
        self.go.wait(5)
        super().refresh(request)
