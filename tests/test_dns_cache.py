"""Upstream DNS off the request path: gateway/providers/dns.py (stale-while-revalidate)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.providers.dns import StaleWhileRevalidate
from gateway.providers.http import UpstreamSessions
from tests.fakes import FakeOpenAI, Script, chunk, sse
from tests.helpers import GatewayFactory, openai_model

URL = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]


def _answer(ip: str, port: int = 80) -> list[ResolveResult]:
    return [
        ResolveResult(hostname="h", host=ip, port=port, family=socket.AF_INET, proto=0, flags=0)
    ]


class Inner(AbstractResolver):
    """A resolver whose lookups wait until the test lets them finish."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.ip = "10.0.0.1"
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return _answer(self.ip, port)

    async def close(self) -> None:
        self.closed = True


async def _until(cond: Any) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def test_a_new_host_is_looked_up_once_for_all_its_waiters() -> None:
    inner = Inner()
    inner.gate.clear()
    dns = StaleWhileRevalidate(inner, ttl_s=60)
    waiters = [asyncio.ensure_future(dns.resolve("up.example", 443)) for _ in range(5)]
    await _until(lambda: inner.calls == 1)
    inner.gate.set()
    answers = await asyncio.gather(*waiters)
    assert inner.calls == 1
    assert {a[0]["host"] for a in answers} == {"10.0.0.1"}
    # Known and fresh: answered from the cache.
    assert (await dns.resolve("up.example", 443))[0]["host"] == "10.0.0.1"
    assert inner.calls == 1


async def test_a_stale_answer_is_given_at_once_and_refreshed_behind() -> None:
    inner = Inner()
    dns = StaleWhileRevalidate(inner, ttl_s=0.0)
    await dns.resolve("up.example", 443)
    inner.gate.clear()  # the refresh will hang until released
    inner.ip = "10.0.0.2"
    # Stale: the old answer comes back without waiting for the lookup.
    answer = await asyncio.wait_for(dns.resolve("up.example", 443), 1.0)
    assert answer[0]["host"] == "10.0.0.1"
    await asyncio.wait_for(dns.resolve("up.example", 443), 1.0)
    assert inner.calls == 2  # one refresh at a time
    inner.gate.set()
    await _until(lambda: dns._answers[("up.example", 443, socket.AF_INET)][0]["host"] == "10.0.0.2")


async def test_a_failed_refresh_keeps_the_last_answer(
    log_lines: Any,
) -> None:
    inner = Inner()
    dns = StaleWhileRevalidate(inner, ttl_s=0.0, retry_s=60.0)
    await dns.resolve("up.example", 443)
    inner.fail = OSError("resolver down")
    assert (await dns.resolve("up.example", 443))[0]["host"] == "10.0.0.1"
    await _until(lambda: not dns._lookups)
    assert inner.calls == 2
    # Not retried before retry_s, still answered.
    assert (await dns.resolve("up.example", 443))[0]["host"] == "10.0.0.1"
    assert inner.calls == 2
    assert any(line["event"] == "dns_refresh_failed" for line in log_lines())


async def test_a_host_never_resolved_raises_the_lookup_error() -> None:
    inner = Inner()
    inner.fail = OSError("no such host")
    dns = StaleWhileRevalidate(inner)
    with pytest.raises(OSError, match="no such host"):
        await dns.resolve("nowhere.example", 443)
    assert not dns._lookups


async def test_a_waiter_that_leaves_does_not_cancel_the_shared_lookup() -> None:
    inner = Inner()
    inner.gate.clear()
    dns = StaleWhileRevalidate(inner)
    first = asyncio.ensure_future(dns.resolve("up.example", 443))
    second = asyncio.ensure_future(dns.resolve("up.example", 443))
    await _until(lambda: inner.calls == 1)
    first.cancel()
    inner.gate.set()
    assert (await second)[0]["host"] == "10.0.0.1"
    assert first.cancelled()


async def test_close_cancels_lookups_in_flight() -> None:
    inner = Inner()
    inner.gate.clear()
    dns = StaleWhileRevalidate(inner)
    dns.warm("up.example", 443)
    await _until(lambda: inner.calls == 1)
    await dns.close()
    assert not dns._lookups and inner.closed


async def test_sessions_warm_a_named_upstream_host_not_an_ip() -> None:
    inner = Inner()
    sessions = UpstreamSessions(StaleWhileRevalidate(inner))
    sessions.get("https://api.example.com/v1", 65536, 5.0)
    sessions.get("http://127.0.0.1:9/v1", 65536, 5.0)
    await _until(lambda: not sessions.resolver._lookups)
    assert inner.calls == 1
    assert ("api.example.com", 443, socket.AF_UNSPEC) in sessions.resolver._answers
    await sessions.aclose()
    assert inner.closed


async def test_new_upstream_connections_to_a_named_host_are_not_looked_up_again(
    gateway: GatewayFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real getaddrinfo of ``localhost``: looked up once (at start-up), then
    each of three concurrent streams (three upstream connections) is
    answered from the cache."""
    asked: list[StaleWhileRevalidate] = []
    resolve = StaleWhileRevalidate.resolve

    async def counting(self: StaleWhileRevalidate, *args: Any, **kw: Any) -> Any:
        asked.append(self)
        return await resolve(self, *args, **kw)

    monkeypatch.setattr(StaleWhileRevalidate, "resolve", counting)
    fake_openai.script = Script(
        events=[sse(chunk("a")), sse(chunk("b")), sse("[DONE]")], itl_s=0.05
    )
    model = openai_model(fake_openai)
    model["base_url"] = model["base_url"].replace("127.0.0.1", "localhost")
    client = await gateway(models=[model])

    async def one() -> bytes:
        resp = await client.post(URL, json={"model": "up", "messages": MSGS, "stream": True})
        assert resp.status == 200
        return await resp.read()

    bodies = await asyncio.gather(one(), one(), one())
    assert all(b"[DONE]" in body for body in bodies)
    assert len(asked) == 3  # one per new upstream connection
    (dns,) = set(asked)
    assert dns.lookups == 1
