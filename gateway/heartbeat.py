"""Heartbeats: SSE comments while the upstream is silent.

While the relay waits on the upstream (before the first token, or mid-stream)
and nothing was written for ``interval`` seconds, the response is committed
(status and SSE headers go out) and a ``: ping`` comment is written, again
every ``interval``. Proxies and load balancers with 30-60 s idle timeouts keep
the connection, and a dead client is found at the next ping. Comment lines are
ignored by SSE parsers (WHATWG HTML, "Server-sent events", event stream
interpretation).
"""

from __future__ import annotations

import asyncio
import time

from .admission import StreamHandle
from .sse import SSEStream


class Heartbeat:
    """Runs beside one relay; the relay flags when it waits on the upstream."""

    __slots__ = ("_handle", "_interval", "_sse", "_task", "pings", "waiting")

    def __init__(self, sse: SSEStream, handle: StreamHandle, interval_s: float) -> None:
        self._sse = sse
        self._handle = handle
        self._interval = interval_s
        self.waiting = False
        """True while the relay awaits the upstream (set by the relay)."""
        self.pings = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # wait() does not raise the task's CancelledError, yet still
            # propagates a cancellation of the caller.
            await asyncio.wait([task])

    async def _run(self) -> None:
        sse = self._sse
        while True:
            due = sse.last_write + self._interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if not self.waiting:
                await asyncio.sleep(self._interval)
                continue
            try:
                if not sse.prepared:
                    await sse.prepare()
                if await sse.ping():
                    self.pings += 1
                else:
                    sse.last_write = time.perf_counter()  # full buffer: try again later
            except ConnectionError:
                self._handle.stop("client_disconnected")
                return
