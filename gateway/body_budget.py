"""The budget of request-body bytes in flight: what bounds memory when many
large bodies arrive at once.

Every request body counts toward ``[server] max_body_bytes_in_flight`` from
the moment it starts to be read until its request ends (a body is kept as
long as its request may still retry or fall back upstream). A body that
announces its size (``Content-Length``) reserves it before a byte is read; a
chunked body grows its reservation as it arrives. A reservation that does
not fit waits up to ``[server] body_budget_wait_s`` for others to give bytes
back, then the request gets 503 ``body_budget_exhausted`` with
``Retry-After`` (in the client's dialect, by the middleware). A single body
larger than the whole budget is always admitted alone (when nothing else is
in flight), so the budget never refuses what ``max_body_bytes`` allows.

A :class:`BodyLease` gives its bytes back once, synchronously, on every exit
path of its ``async with`` (success, error, cancellation at any await).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from aiohttp import web

from .errors import BodyBudgetExhausted
from .metrics import Metrics

RETRY_AFTER_S: Final = 1


class BodyBudget:
    """Bytes of request bodies in flight, bounded by ``limit_bytes``.

    Waiters are woken in arrival order (a fair FIFO), so a large body is not
    starved by a stream of small ones.
    """

    def __init__(self, limit_bytes: int, wait_s: float, metrics: Metrics | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.wait_s = wait_s
        self.in_flight = 0
        """Bytes reserved now (the ``sluice_request_body_bytes_in_flight`` gauge)."""
        self.leases = 0
        """Bodies holding a reservation now."""
        self._waiters: list[asyncio.Event] = []
        self._metrics = metrics
        if metrics is not None:
            metrics.body_budget.set(limit_bytes)

    def _fits(self, more: int, held: int) -> bool:
        """Room for ``more`` bytes, or nobody else holds any (``held``: the
        asking body's own bytes)."""
        return self.in_flight + more <= self.limit_bytes or self.in_flight == held

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.body_in_flight.set(self.in_flight)
            self._metrics.bodies_in_flight.set(self.leases)

    async def _take(self, more: int, held: int = 0) -> None:
        """Reserve ``more`` bytes: now, or after a wait of at most ``wait_s``.
        Raises :class:`BodyBudgetExhausted` when the wait ends without room."""
        if not self._waiters and self._fits(more, held):
            self.in_flight += more
            self._changed()
            return
        if self._metrics is not None:
            self._metrics.body_budget_waits.inc()
        turn = asyncio.Event()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(self.wait_s):
                while not (self._waiters[0] is turn and self._fits(more, held)):
                    turn.clear()
                    await turn.wait()
        except TimeoutError:
            if self._metrics is not None:
                self._metrics.body_budget_rejections.inc()
            raise BodyBudgetExhausted(
                "The gateway is reading too many request bodies "
                f"({self.limit_bytes} bytes in flight); retry shortly",
                retry_after=RETRY_AFTER_S,
            ) from None
        finally:
            self._waiters.remove(turn)
            self._wake()
        self.in_flight += more
        self._changed()

    def _give(self, less: int) -> None:
        self.in_flight -= less
        self._changed()
        self._wake()

    def _wake(self) -> None:
        """Let the first waiter look again (it takes its bytes if they fit)."""
        if self._waiters:
            self._waiters[0].set()

    @asynccontextmanager
    async def lease(self, announced: int = 0) -> AsyncIterator[BodyLease]:
        """A lease for one body, ``announced`` bytes reserved at once (its
        ``Content-Length``; 0 when unknown). Its bytes are given back when
        the block exits, however it exits."""
        lease = BodyLease(self)
        self.leases += 1
        try:
            if announced:
                await lease.grow(announced)
            yield lease
        finally:
            self.leases -= 1
            lease.release()


class BodyLease:
    """One body's reservation; see :meth:`BodyBudget.lease`."""

    __slots__ = ("_budget", "bytes")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0

    async def grow(self, total: int) -> None:
        """Hold at least ``total`` bytes (waits as :class:`BodyBudget` says)."""
        more = total - self.bytes
        if more <= 0:
            return
        await self._budget._take(more, self.bytes)
        self.bytes = total

    def release(self) -> None:
        """Give every byte back (idempotent, synchronous)."""
        if self.bytes:
            held, self.bytes = self.bytes, 0
            self._budget._give(held)
        else:
            self._budget._changed()


BODY_BUDGET: Final = web.AppKey("body_budget", BodyBudget)
