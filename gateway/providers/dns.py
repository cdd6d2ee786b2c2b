"""Upstream host names resolved off the request path (stale-while-revalidate).

aiohttp's own DNS cache forgets an answer after ``ttl_dns_cache`` (10 s), and
the next new connection then waits for ``getaddrinfo`` in a worker thread:
under load, a request's TTFT pays for a DNS lookup every ten seconds per
upstream host. :class:`StaleWhileRevalidate` is the one resolver of every
upstream session (:class:`~gateway.providers.http.UpstreamSessions`): a host
is looked up when its session is created (:meth:`StaleWhileRevalidate.warm`,
at start-up), a known answer is given at once however old it is, and an
answer older than ``ttl_s`` is refreshed in the background (one lookup per
host at a time), as HTTP caches do with ``stale-while-revalidate`` (RFC 5861,
section 3). A failed refresh keeps the last answer (a resolver that is down
does not take a working upstream with it) and is tried again on the next
use after ``retry_s``. Only a host never resolved waits, and concurrent
requests for it share one lookup.

The lookups themselves are aiohttp's ``DefaultResolver`` (``getaddrinfo`` in
the loop's executor, or aiodns when installed). IP literals never get here
(aiohttp connects to them directly).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Final

import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

log = structlog.get_logger("gateway.providers.dns")

TTL_S: Final = 60.0
"""An answer older than this is refreshed in the background when next used."""
RETRY_S: Final = 5.0
"""After a failed refresh, the next one waits at least this long."""

_Key = tuple[str, int, socket.AddressFamily]


class StaleWhileRevalidate(AbstractResolver):
    """An aiohttp resolver that never makes a known host wait (module docstring).

    ``inner`` does the lookups (default: aiohttp's ``DefaultResolver``).
    :meth:`resolve` returns aiohttp's ``ResolveResult`` list; for a host
    never resolved it raises what ``inner`` raises (``OSError``: aiohttp's
    connector reports it as ``ClientConnectorDNSError``).
    """

    def __init__(
        self,
        inner: AbstractResolver | None = None,
        *,
        ttl_s: float = TTL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self._inner = inner if inner is not None else DefaultResolver()
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self._answers: dict[_Key, list[ResolveResult]] = {}
        self._fresh_until: dict[_Key, float] = {}
        self._lookups: dict[_Key, asyncio.Task[list[ResolveResult]]] = {}
        self.lookups = 0
        """Lookups started (for tests and the curious)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port, family)
        answer = self._answers.get(key)
        if answer is not None:
            if time.monotonic() >= self._fresh_until[key] and key not in self._lookups:
                self._start(key)
            return answer
        task = self._lookups.get(key) or self._start(key)
        # Shielded: one caller leaving does not cancel the lookup the others share.
        return await asyncio.shield(task)

    def warm(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> None:
        """Look ``host`` up in the background now (no-op without a running loop
        or for a host already known or being looked up)."""
        key = (host, port, family)
        if key in self._answers or key in self._lookups:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start(key)

    def _start(self, key: _Key) -> asyncio.Task[list[ResolveResult]]:
        self.lookups += 1
        task = asyncio.get_running_loop().create_task(self._lookup(key))
        self._lookups[key] = task
        task.add_done_callback(self._done)
        return task

    async def _lookup(self, key: _Key) -> list[ResolveResult]:
        host, port, family = key
        try:
            answer = await self._inner.resolve(host, port, family)
        except Exception as exc:
            if key in self._answers:  # a refresh: keep serving the last answer
                self._fresh_until[key] = time.monotonic() + self._retry_s
                log.warning("dns_refresh_failed", host=host, error=repr(exc))
            raise
        finally:
            self._lookups.pop(key, None)
        self._answers[key] = answer
        self._fresh_until[key] = time.monotonic() + self._ttl_s
        return answer

    @staticmethod
    def _done(task: asyncio.Task[list[ResolveResult]]) -> None:
        # A background refresh's or warm-up's failure was logged (or will be
        # raised to a waiting caller); retrieve it so asyncio does not warn.
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        """Cancel the lookups in flight and close ``inner``."""
        tasks = list(self._lookups.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._inner.close()
