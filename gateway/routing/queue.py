"""The waiting room of one model: requests that found every deployment at its
``max_concurrent_streams`` wait here, first come first served, bounded in
length and in time.

:meth:`WaitQueue.wait` returns when a slot was given back (the caller then
chooses again); :meth:`WaitQueue.notify` wakes the longest waiter. A waiter
cancelled or timed out after it was woken passes its wake-up on, so a freed
slot is never lost. Nothing here holds a slot: the router's leases do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class QueueFull(Exception):
    """``max_queue`` requests already wait."""


class WaitQueue:
    """See the module docstring. ``max_queue`` 0: nobody waits."""

    __slots__ = ("_max", "_waiters")

    def __init__(self, max_queue: int) -> None:
        self._max = max_queue
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) to be woken by :meth:`notify`.

        Raises :class:`QueueFull` at once when the queue is full, and
        ``TimeoutError`` when nobody woke it in time."""
        if len(self._waiters) >= self._max:
            raise QueueFull
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except BaseException:
            # Timed out or cancelled: leave the queue; a wake-up that came
            # meanwhile goes to the next waiter.
            if waiter.done() and not waiter.cancelled():
                self.notify()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def notify(self) -> None:
        """A slot was given back: wake the longest waiter (if any)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return
