"""The playground page, ``GET /playground``: served by default on a loopback
address only, switched by ``[server] playground``. (Driven in Chromium by
tests/test_browser.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import ConfigError, is_loopback, load_settings
from tests.helpers import SIM_FAST, GatewayFactory, settings_from


async def test_served_on_loopback_by_default(gateway: GatewayFactory) -> None:
    client = await gateway()
    page = await client.get("/playground")
    assert page.status == 200
    assert page.content_type == "text/html" and page.charset == "utf-8"
    assert "max-age" in page.headers["Cache-Control"]
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    elements = ("model", "key", "prompt", "send", "stop", "answer", "ttft", "tps", "itl",
                "system", "temperature", "max-tokens", "clear", "transcript")  # fmt: skip
    for element in elements:
        assert f'id="{element}"' in html
    assert '<script type="module" src="/playground.js">' in html
    script = await client.get("/playground.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert 'from "/sluice.js"' in await script.text()


async def test_off_when_configured_off(gateway: GatewayFactory) -> None:
    client = await gateway(server={"playground": False})
    for path in ("/playground", "/playground.js"):
        assert (await client.get(path)).status == 404
    assert (await client.get("/sluice.js")).status == 200  # the client library stays


async def _client(aiohttp_client: Any, **server: Any) -> TestClient[Any, Any]:
    """The app as ``run()`` builds it to listen on every address (0.0.0.0)."""
    app = create_app(settings_from(models=[SIM_FAST], server=server), listen_host="0.0.0.0")
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    return client


async def test_off_by_default_beyond_loopback(aiohttp_client: Any) -> None:
    assert (await (await _client(aiohttp_client)).get("/playground")).status == 404
    # The listen address decides, even when the file says loopback (--host).
    lying = await _client(aiohttp_client, host="127.0.0.1")
    assert (await lying.get("/playground")).status == 404
    forced = await _client(aiohttp_client, playground=True)
    assert (await forced.get("/playground")).status == 200


@pytest.mark.parametrize(
    ("host", "playground", "on"),
    [
        ("127.0.0.1", None, True),
        ("127.1.2.3", None, True),
        ("::1", None, True),
        ("localhost", None, True),
        ("0.0.0.0", None, False),
        ("::", None, False),
        ("10.0.0.5", None, False),
        ("gateway.internal", None, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", False, False),
    ],
)
def test_playground_on(host: str, playground: bool | None, on: bool) -> None:
    server = settings_from(models=[SIM_FAST], server={"playground": playground}).server
    assert server.playground_on(host) is on
    assert is_loopback(host) is (host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))


def test_config_key(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text('[server]\nplayground = false\n[[models]]\nname = "s"\nprovider = "sim"\n')
    assert load_settings(path).server.playground is False
    path.write_text('[server]\nhost = "0.0.0.0"\n[[models]]\nname = "s"\nprovider = "sim"\n')
    settings = load_settings(path)
    assert settings.server.playground is None and not settings.server.playground_on()
    path.write_text('[server]\nplayground = "maybe"\n[[models]]\nname = "s"\nprovider = "sim"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "server.playground: Input should be a valid boolean" in str(err.value)
