"""Admission control and the registry of open streams (for graceful shutdown).

- ``max_streams``: requests beyond it get 429 + ``Retry-After`` (AtCapacity).
- ``max_queued_bytes``: while the bytes queued toward all clients exceed it,
  new requests get 429 too: one more stream would only slow every other one.
- Draining (SIGTERM/SIGINT): new requests get 503; open streams may finish
  for ``shutdown_grace_s``; the rest are stopped with reason ``shutdown``.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from .errors import AtCapacity, ShuttingDown
from .metrics import Metrics

log = structlog.get_logger("gateway.admission")


class StreamHandle:
    """One admitted request. :meth:`stop` interrupts it wherever it waits.

    The relay hands it the ``asyncio.Timeout`` it is waiting under; stopping
    reschedules that timeout to now, so the wait ends with a TimeoutError the
    relay attributes to :attr:`stop_reason`.
    """

    __slots__ = ("stop_reason", "timeout")

    def __init__(self) -> None:
        self.stop_reason: str | None = None
        self.timeout: asyncio.Timeout | None = None

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.timeout is not None and not self.timeout.expired():
            self.timeout.reschedule(asyncio.get_running_loop().time())


class Admission:
    """Counts open requests and queued bytes; decides who gets in."""

    def __init__(self, max_streams: int, max_queued_bytes: int, metrics: Metrics) -> None:
        self.max_streams = max_streams
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        """Bytes queued toward all clients, as of each connection's last sample."""
        self.draining = False
        self._metrics = metrics
        self._open: set[StreamHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def open_streams(self) -> int:
        return len(self._open)

    @property
    def saturated(self) -> bool:
        return len(self._open) >= self.max_streams or self.queued_bytes >= self.max_queued_bytes

    def admit(self) -> StreamHandle:
        """A handle for a new request. Raises ShuttingDown (503) or AtCapacity (429)."""
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
        handle = StreamHandle()
        self._open.add(handle)
        self._idle.clear()
        return handle

    def release(self, handle: StreamHandle) -> None:
        self._open.discard(handle)
        if not self._open:
            self._idle.set()

    async def drain(self, grace_s: float, stop_wait_s: float = 5.0) -> None:
        """Refuse new requests, let open ones finish for ``grace_s``, then stop
        the rest (reason ``shutdown``) and wait up to ``stop_wait_s`` for them."""
        self.draining = True
        started = time.perf_counter()
        log.info("draining", open_streams=len(self._open), grace_s=grace_s)
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("grace_expired", open_streams=len(self._open))
            for handle in list(self._open):
                handle.stop("shutdown")
            try:
                async with asyncio.timeout(stop_wait_s):
                    await self._idle.wait()
            except TimeoutError:
                log.error("streams_left_after_shutdown", open_streams=len(self._open))
        log.info("drained", seconds=round(time.perf_counter() - started, 3))
