"""Generations that outlive their request (background responses).

A detached stream runs in a task of its own, inside admission control (it
counts as an open stream, graceful shutdown stops it) and its deadline, and
writes only to the stream store. :class:`Detached` keeps the running ones by
id so their owner can cancel them, and logs each one's end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from .interrupts import Interrupt
from .metrics import Metrics
from .outcome import Outcome

log = structlog.get_logger("gateway.detached")


class DetachedStream(Protocol):
    outcome: Outcome | None

    def stop(self, why: Interrupt) -> None: ...


class Detached:
    """The running detached streams of this process, by stream id; counted in
    ``sluice_detached_streams_active`` and, as each ends,
    ``sluice_detached_stream_terminations_total{reason}``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._running: dict[str, DetachedStream] = {}
        self._owners: dict[str, str | None] = {}
        """stream id -> owner (see :func:`gateway.api.follow.owner_of`)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        stream_id: str,
        stream: DetachedStream,
        run: Callable[[], Awaitable[object]],
        owner: str | None = None,
        fields: dict[str, object] | None = None,
    ) -> None:
        """Run ``run()`` (the stream's ``run``) in a task of its own; ``done``
        bookkeeping and the end-of-stream log line follow. ``owner``: whose
        key started it (:meth:`revoke` stops a revoked key's streams).
        ``fields``: more for that line, filled while it runs (its spend)."""
        self._running[stream_id] = stream
        self._owners[stream_id] = owner
        metrics = self._metrics
        metrics.detached_active.inc()

        async def go() -> None:
            try:
                await run()
            except Exception:
                # A stream into the store has no response to fail: its errors
                # end as error events. Anything else is a bug; log it whole.
                log.exception("detached_failed", stream_id=stream_id)
            finally:
                self._running.pop(stream_id, None)
                self._owners.pop(stream_id, None)
                metrics.detached_active.dec()
                if stream.outcome is not None:
                    metrics.detached_terminations.labels(stream.outcome.reason.value).inc()
                    log.info(
                        "detached_end",
                        stream_id=stream_id,
                        **stream.outcome.log_fields(),
                        **(fields or {}),
                    )

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, stream_id: str) -> bool:
        """Stop the stream (its upstream closes at once). False if it is not
        running in this process."""
        stream = self._running.get(stream_id)
        if stream is None:
            return False
        stream.stop(Interrupt.CANCEL)
        return True

    def revoke(self, owners: set[str]) -> int:
        """Stop every stream started by one of ``owners`` (keys that were
        revoked: nobody could cancel them any more); returns how many."""
        doomed = [sid for sid, owner in self._owners.items() if owner in owners]
        for stream_id in doomed:
            self._running[stream_id].stop(Interrupt.CANCEL)
        if doomed:
            log.info("detached_revoked", streams=len(doomed))
        return len(doomed)

    def running(self, stream_id: str) -> bool:
        return stream_id in self._running

    async def aclose(self) -> None:
        """Stop every running stream (the app is shutting down) and wait for them."""
        for stream in list(self._running.values()):
            stream.stop(Interrupt.SHUTDOWN)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
