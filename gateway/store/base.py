"""The stream store: SSE events of a stream kept after (and while) they are
written, so a client can read them again, or for the first time.

One store serves stored and background Responses (and, later, resumable Chat
Completions streams). Its operations map one to one onto a Redis Stream per
stream id (``XADD`` to append, ``XRANGE`` to replay, ``XREAD BLOCK`` to
follow, a hash for the metadata, ``EXPIRE`` for the TTL), so a Redis store
can stand in for the memory one (:mod:`gateway.store.memory`) without a
change to its callers.

Events are numbered from 0 in the order appended; ``after`` in
:meth:`StreamStore.follow` is the number of the last event the reader has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import GatewayError
from ..termination import Termination


class StreamTooLarge(GatewayError):
    """A stream grew past the store's per-stream byte bound (its producer stops).

    Recorded as ``slow_client``: like a client that takes nothing, the
    downstream will not take more."""

    status, type, code = 507, "stream_too_large", "stream_too_large"
    reason = Termination.SLOW_CLIENT


@dataclass(frozen=True, slots=True)
class StoredStream:
    """What the store knows of one stream (the events themselves aside)."""

    stream_id: str
    owner: str | None
    """The key name that created it (None without keys); only it may read it."""
    status: str
    """``in_progress`` until :meth:`StreamStore.close`, then the final status."""
    events: int
    size: int
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
        status: str,
        snapshot: bytes | None = None,
        ttl_s: float | None = None,
    ) -> None:
        """The stream is finished: followers end after its last event; it is
        kept for ``ttl_s`` (default: the store's TTL) from now."""
        ...

    async def get(self, stream_id: str) -> StoredStream | None:
        """The stream's metadata, or None (never stored, expired or deleted)."""
        ...

    def follow(self, stream_id: str, after: int) -> AsyncIterator[bytes]:
        """The events numbered above ``after``, then each new one as it is
        appended, until the stream is closed (or deleted)."""
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
