"""The stream store: SSE events of a stream kept after (and while) they are
written, so a client can read them again, or for the first time.

One store serves stored and background Responses and resumable Chat
Completions streams. Its operations map one to one onto a Redis Stream per
stream id (``XADD`` to append, ``XREAD BLOCK`` to read, a hash for the
metadata, ``EXPIRE`` for the TTL), so a Redis store can stand in for the
memory one (:mod:`gateway.store.memory`) without a change to its callers.

Events are numbered from 0 in the order appended; ``after`` in
:meth:`StreamStore.read` is the number of the last event the reader has.
Readers do not loop here: :class:`gateway.stored_upstream.StoredUpstream`
turns :meth:`StreamStore.read` into an upstream that the stream core
(:class:`gateway.stream.Stream`) relays like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from ..errors import GatewayError
from ..termination import Termination

MAX_EVENT_NUMBER = 2**53 - 1
"""Event numbers (and ``starting_after``, ``Last-Event-ID``) stay below this:
an integer every JSON reader and Redis stream id takes exactly."""
READ_BATCH = 256
"""At most this many events per :meth:`StreamStore.read`."""


class StoredStatus(StrEnum):
    """A stored stream's status: ``in_progress`` until it is closed, then how it
    ended (the Responses API's own values, which chat streams share)."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def running(self) -> bool:
        return self in (StoredStatus.QUEUED, StoredStatus.IN_PROGRESS)


class StoredEvents(NamedTuple):
    """What one :meth:`StreamStore.read` found: the next events (possibly
    none, when the wait ran out) and whether the stream has ended after them
    (closed, deleted or expired: no more will come)."""

    events: tuple[bytes, ...]
    ended: bool


class StreamTooLarge(GatewayError):
    """A stream grew past the store's per-stream byte bound (its producer stops).

    Recorded as ``slow_client``: like a client that takes nothing, the
    downstream will not take more."""

    status, type, code = 507, "stream_too_large", "stream_too_large"
    reason = Termination.SLOW_CLIENT


def too_large_context(size: int, bound: int) -> StreamTooLarge:
    """A stream whose context alone is past the per-stream bound."""
    return StreamTooLarge(
        f"The request's stored context ({size} bytes) is past the store's bound of {bound} "
        "bytes per response ([store] stream_max_bytes); send store: false, or raise the bound"
    )


@dataclass(frozen=True, slots=True)
class StoredStream:
    """What the store knows of one stream (the events themselves aside)."""

    stream_id: str
    owner: str | None
    """The key name that created it (None without keys); only it may read it."""
    status: StoredStatus
    """``in_progress`` until :meth:`StreamStore.close`, then the final status."""
    events: int
    size: int
    """Bytes held: events, snapshot and context."""
    snapshot: bytes | None
    """The latest object the producer saved with the stream (a Response)."""
    context: bytes | None = None
    """What the stream was made from, saved at creation (a Response's input
    items, for ``previous_response_id``)."""


class StreamStore(Protocol):
    """See the module docstring. Every method may raise
    :class:`StreamTooLarge` (append) or a ``GatewayError`` for a store that is
    unreachable."""

    async def create(self, stream_id: str, owner: str | None, context: bytes | None = None) -> None:
        """Start an empty stream (``in_progress``), with its ``context``."""
        ...

    async def append(
        self,
        stream_id: str,
        events: Sequence[bytes],
        snapshot: bytes | None = None,
        *,
        final: bool = False,
    ) -> int:
        """Append events (and replace the snapshot); returns the number of the
        last event. Raises :class:`StreamTooLarge` past the per-stream bound
        (nothing of this call is kept), except for the ``final`` events that
        end a stream that hit it (so it ends with its error, not silently)."""
        ...

    async def close(
        self,
        stream_id: str,
        status: StoredStatus,
        snapshot: bytes | None = None,
        ttl_s: float | None = None,
    ) -> None:
        """The stream is finished: followers end after its last event; it is
        kept for ``ttl_s`` (default: the store's TTL) from now."""
        ...

    async def get(self, stream_id: str) -> StoredStream | None:
        """The stream's metadata, or None (never stored, expired or deleted)."""
        ...

    async def read(self, stream_id: str, after: int, wait_s: float) -> StoredEvents:
        """The events numbered above ``after`` (at most :data:`READ_BATCH`);
        when there are none yet, waits up to ``wait_s`` seconds for one.

        Cancel-safe: a read cancelled while it waits consumes nothing (the
        reader asks again with the same ``after``). Raises
        :class:`~gateway.errors.ProducerLost` when the stream is still
        running but its producer is gone, and
        :class:`~gateway.errors.StoreUnavailable` for a store that does not
        answer."""
        ...

    async def request_cancel(self, stream_id: str) -> None:
        """Ask the stream's producer, wherever it runs, to stop: its next
        append raises :class:`~gateway.errors.StreamCancelled`."""
        ...

    async def delete(self, stream_id: str) -> bool:
        """Remove the stream; followers end. Returns whether it existed."""
        ...

    async def aclose(self) -> None:
        """Release the store's resources."""
        ...
