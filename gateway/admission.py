"""Admission control and the registry of open requests (for graceful shutdown).

- ``max_streams``: requests beyond it get 429 + ``Retry-After`` (AtCapacity).
- ``max_queued_bytes``: while the bytes queued toward all clients exceed it,
  new requests get 429 too: one more stream would only slow every other one.
- Draining (SIGTERM/SIGINT): new requests get 503; open requests may finish
  for ``shutdown_grace_s``; the rest are stopped with
  :attr:`~gateway.interrupts.Interrupt.SHUTDOWN`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

from .errors import AtCapacity, ShuttingDown
from .interrupts import Interrupt
from .metrics import Metrics

log = structlog.get_logger("gateway.admission")


class Stoppable(Protocol):
    """An admitted request: :meth:`stop` interrupts it wherever it waits."""

    def stop(self, why: Interrupt) -> None: ...


class Admission:
    """Counts open requests and queued bytes; decides who gets in."""

    def __init__(self, max_streams: int, max_queued_bytes: int, metrics: Metrics) -> None:
        self.max_streams = max_streams
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        """Bytes queued toward all clients, as of each connection's last sample
        (streams add their changes)."""
        self.draining = False
        """Shutting down: new requests are refused (503)."""
        self.leaving = False
        """SIGTERM arrived and ``drain_delay_s`` runs: still serving, not ready."""
        self._metrics = metrics
        self._open: set[Stoppable] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def open_streams(self) -> int:
        return len(self._open)

    @property
    def saturated(self) -> bool:
        return len(self._open) >= self.max_streams or self.queued_bytes >= self.max_queued_bytes

    def admit(self, request: Stoppable) -> None:
        """Count ``request`` as open. Raises ShuttingDown (503) or AtCapacity (429)."""
        if self.draining:
            self._metrics.admission_rejections.labels("shutdown").inc()
            raise ShuttingDown("The gateway is shutting down; retry on another instance")
        if len(self._open) >= self.max_streams:
            self._metrics.admission_rejections.labels("max_streams").inc()
            raise AtCapacity(
                f"The gateway is at capacity ({self.max_streams} open streams)", retry_after=1
            )
        if self.queued_bytes >= self.max_queued_bytes:
            self._metrics.admission_rejections.labels("write_buffer").inc()
            raise AtCapacity("The gateway's write buffers are full", retry_after=1)
        self._open.add(request)
        self._idle.clear()

    def release(self, request: Stoppable) -> None:
        self._open.discard(request)
        if not self._open:
            self._idle.set()

    async def drain(self, grace_s: float, stop_wait_s: float = 5.0) -> None:
        """Refuse new requests, let open ones finish for ``grace_s``, then stop
        the rest (``shutdown``) and wait up to ``stop_wait_s`` for them."""
        self.draining = True
        started = time.perf_counter()
        log.info("draining", open_streams=len(self._open), grace_s=grace_s)
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("grace_expired", open_streams=len(self._open))
            for request in list(self._open):
                request.stop(Interrupt.SHUTDOWN)
            try:
                async with asyncio.timeout(stop_wait_s):
                    await self._idle.wait()
            except TimeoutError:
                log.error("streams_left_after_shutdown", open_streams=len(self._open))
        log.info("drained", seconds=round(time.perf_counter() - started, 3))
