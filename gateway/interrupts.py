"""Interrupting one task's wait, and telling that interruption apart.

The stream core waits on one thing at a time (the upstream, the client's
drain, the opening of the upstream). Its timers (heartbeat, idle, deadline)
and its stop signal (shutdown) interrupt that wait by cancelling the task
with a recorded :class:`Interrupt`, as ``asyncio.timeout`` does internally,
so no per-chunk timeout object is needed: a timer is one ``call_later``
handle per stream, re-armed only when it fires.

Telling cancellations apart: aiohttp also cancels the handler task when the
client disconnects (``handler_cancellation``). :meth:`Interrupter.take`
returns the recorded interrupt only if nothing else cancelled the task too
(``Task.uncancel()`` back to zero); otherwise the cancellation is the
client's and must propagate.
"""

from __future__ import annotations

import asyncio
from enum import Enum


class Interrupt(Enum):
    """Why the stream core interrupted its own wait."""

    HEARTBEAT = "heartbeat"
    """Nothing written for ``heartbeat_interval_s`` while waiting on the upstream."""
    IDLE = "idle"
    """The upstream was silent for ``idle_timeout_s`` mid-stream."""
    DEADLINE = "deadline"
    """The stream ran past ``deadline_s``."""
    SHUTDOWN = "shutdown"
    """The gateway is shutting down and the grace period is over."""


class Interrupter:
    """Cancels its task with a recorded :class:`Interrupt` (the first one wins
    until it is taken)."""

    __slots__ = ("_armed", "_task", "pending")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task = task
        self._armed = True
        self.pending: Interrupt | None = None

    def interrupt(self, why: Interrupt) -> None:
        """Cancel the task's current wait with ``why`` (no-op once disarmed or
        while an earlier interrupt is pending)."""
        if self._armed and self.pending is None and not self._task.done():
            self.pending = why
            self._task.cancel()

    stop = interrupt
    """:class:`~gateway.admission.Stoppable`: a plain request stops by being interrupted."""

    def take(self) -> Interrupt | None:
        """In an ``except CancelledError``: the interrupt this cancellation
        carries, or None when the task was (also) cancelled by someone else,
        in which case the caller must re-raise."""
        why, self.pending = self.pending, None
        if why is None:
            return None
        return why if self._task.uncancel() == 0 else None

    def disarm(self) -> None:
        """No more interrupts (the stream is cleaning up)."""
        self._armed = False
