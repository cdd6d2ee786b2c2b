"""A request whose body could not be written (aiohttp's "Can not write
request body": the pooled connection it was given was already closing, the
keep-alive race) never reached the upstream, so ``providers.http.post``
sends it once more instead of failing the stream; any other failure, and a
second unsent one, are not repeated. The Grafana end-to-end run hit this
race about every other full run (a 502 ``upstream_connect_error`` for a
routed model)."""

from __future__ import annotations

import aiohttp
import pytest
from aioresponses import aioresponses

from gateway.errors import GatewayError
from gateway.providers.http import post
from tests.conftest import LogLines

URL = "http://upstream.invalid/v1/chat/completions"
UNSENT = aiohttp.ClientOSError(None, f"Can not write request body for {URL}")
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.usefixtures("aioresponses_shim")
async def test_an_unsent_body_is_sent_once_more(log_lines: LogLines) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=UNSENT)
        mocked.post(URL, status=200, payload={"ok": True})
        async with aiohttp.ClientSession() as session:
            response = await post(session, URL, BODY, {})
            assert response.status == 200 and await response.json() == {"ok": True}
            response.release()
        calls = [c for key, c in mocked.requests.items() if key[0] == "POST"]
        assert len(calls[0]) == 2
    resent = [li for li in log_lines() if li["event"] == "upstream_body_resent"]
    assert [li["host"] for li in resent] == ["upstream.invalid"]


@pytest.mark.usefixtures("aioresponses_shim")
@pytest.mark.parametrize(
    "first",
    [
        UNSENT,  # twice in a row: the second is the failure
        aiohttp.ServerDisconnectedError(),  # the upstream may have had the request
        aiohttp.ClientOSError(104, "Connection reset by peer"),
    ],
    ids=["unsent twice", "server disconnected", "reset"],
)
async def test_other_failures_are_not_repeated(first: aiohttp.ClientError) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=first)
        mocked.post(URL, exception=UNSENT)
        mocked.post(URL, status=200, payload={"ok": True})
        async with aiohttp.ClientSession() as session:
            with pytest.raises(GatewayError):
                await post(session, URL, BODY, {})
        calls = [c for key, c in mocked.requests.items() if key[0] == "POST"]
        expected = 2 if first is UNSENT else 1
        assert len(calls[0]) == expected
