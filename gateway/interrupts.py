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
from typing import Any


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
    CANCEL = "cancel"
    """Its owner cancelled it (``POST /v1/responses/{id}/cancel``)."""


class Interrupter:
    """Cancels its task with a recorded :class:`Interrupt` (the first one wins
    until it is taken)."""

    __slots__ = ("_armed", "_task", "pending")

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self._task = task
        self._armed = True
        self.pending: Interrupt | None = None

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The task to interrupt, when it was not known at construction; an
        interrupt that came before cancels it now."""
        self._task = task
        if self.pending is not None:
            task.cancel()

    def interrupt(self, why: Interrupt) -> None:
        """Cancel the task's current wait with ``why`` (no-op once disarmed or
        while an earlier interrupt is pending; recorded until :meth:`bind`)."""
        if not self._armed or self.pending is not None:
            return
        task = self._task
        if task is None:
            self.pending = why
        elif not task.done():
            self.pending = why
            task.cancel()

    stop = interrupt
    """:class:`~gateway.admission.Stoppable`: a plain request stops by being interrupted."""

    def take(self) -> Interrupt | None:
        """In an ``except CancelledError``: the interrupt this cancellation
        carries, or None when the task was (also) cancelled by someone else,
        in which case the caller must re-raise."""
        why, self.pending = self.pending, None
        if why is None or self._task is None:
            return None
        return why if self._task.uncancel() == 0 else None

    def disarm(self) -> None:
        """No more interrupts (the stream is cleaning up)."""
        self._armed = False
