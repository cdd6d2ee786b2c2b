"""The stream store in this process's memory (the default; one process only).

Bounded three ways, counting everything an entry holds (its events, its
snapshot and its context): a per-stream byte bound (:class:`~gateway.store.base.StreamTooLarge`
stops the producer), a total byte bound (the oldest finished streams are
evicted first; when only running streams remain, appends that would pass it
fail as too large), a TTL for finished streams, and ``running_ttl_s`` after
its last append for a stream nobody closed (its producer is gone), as in the
Redis store.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import StreamCancelled, StreamGone
from .base import (
    READ_BATCH,
    StoredEvents,
    StoredStatus,
    StoredStream,
    StreamTooLarge,
    too_large_context,
)


@dataclass(slots=True)
class _Entry:
    owner: str | None
    status: StoredStatus = StoredStatus.IN_PROGRESS
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    snapshot: bytes | None = None
    closed_at: float | None = None
    cancel: bool = False
    context: bytes | None = None
    ttl_s: float | None = None
    touched_at: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStreamStore:
    """See the module docstring; implements :class:`~gateway.store.base.StreamStore`."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_bytes: int,
        stream_max_bytes: int,
        running_ttl_s: float = 3600.0,
    ) -> None:
        self._ttl_s = ttl_s
        self._running_ttl_s = running_ttl_s
        self._max_bytes = max_bytes
        self._stream_max_bytes = stream_max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    @property
    def held_bytes(self) -> int:
        """Bytes of events held now, all streams."""
        return self._bytes

    async def create(self, stream_id: str, owner: str | None, context: bytes | None = None) -> None:
        size = len(context or b"")
        if size > self._stream_max_bytes:
            raise too_large_context(size, self._stream_max_bytes)
        self._make_room(size)
        if self._bytes + size > self._max_bytes:
            raise StreamTooLarge("The stream store is full")
        self._entries[stream_id] = _Entry(owner, context=context, size=size)
        self._bytes += size

    async def append(
        self,
        stream_id: str,
        events: Sequence[bytes],
        snapshot: bytes | None = None,
        *,
        final: bool = False,
    ) -> int:
        entry = self._entries.get(stream_id)
        if entry is None or entry.closed_at is not None:
            raise StreamGone(f"The stream {stream_id} no longer takes events")
        if entry.cancel and not final:
            raise StreamCancelled("The response was cancelled")
        size = sum(len(e) for e in events)
        if snapshot is not None:
            size += len(snapshot) - len(entry.snapshot or b"")
        if entry.size + size > self._stream_max_bytes and not final:
            raise StreamTooLarge(
                f"The stream passed the store's bound of {self._stream_max_bytes} bytes"
            )
        self._make_room(size)
        if self._bytes + size > self._max_bytes and not final:
            raise StreamTooLarge("The stream store is full")
        entry.events.extend(events)
        entry.touched_at = time.monotonic()
        entry.size += size
        self._bytes += size
        if snapshot is not None:
            entry.snapshot = snapshot
        self._wake(entry)
        return len(entry.events) - 1

    async def close(
        self,
        stream_id: str,
        status: StoredStatus,
        snapshot: bytes | None = None,
        ttl_s: float | None = None,
    ) -> None:
        entry = self._entries.get(stream_id)
        if entry is None:
            return
        entry.status = status
        entry.ttl_s = ttl_s
        entry.closed_at = time.monotonic()
        if snapshot is not None:
            grown = len(snapshot) - len(entry.snapshot or b"")
            entry.size += grown
            self._bytes += grown
            entry.snapshot = snapshot
        self._entries.move_to_end(stream_id)  # eviction order: oldest finished first
        self._wake(entry)

    async def get(self, stream_id: str) -> StoredStream | None:
        self._expire()
        entry = self._entries.get(stream_id)
        if entry is None:
            return None
        return StoredStream(
            stream_id,
            entry.owner,
            entry.status,
            len(entry.events),
            entry.size,
            entry.snapshot,
            entry.context,
        )

    async def read(self, stream_id: str, after: int, wait_s: float) -> StoredEvents:
        entry = self._entries.get(stream_id)
        if entry is None:
            return StoredEvents((), ended=True)
        start = after + 1
        if start >= len(entry.events) and entry.closed_at is None:
            changed = entry.changed
            try:
                async with asyncio.timeout(wait_s):
                    await changed.wait()
            except TimeoutError:
                return StoredEvents((), ended=False)
            if self._entries.get(stream_id) is not entry:
                return StoredEvents((), ended=True)  # deleted meanwhile
        batch = tuple(entry.events[start : start + READ_BATCH])
        ended = entry.closed_at is not None and start + len(batch) >= len(entry.events)
        return StoredEvents(batch, ended)

    async def request_cancel(self, stream_id: str) -> None:
        entry = self._entries.get(stream_id)
        if entry is not None:
            entry.cancel = True

    async def delete(self, stream_id: str) -> bool:
        entry = self._entries.pop(stream_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        self._wake(entry)
        return True

    async def aclose(self) -> None:
        for stream_id in list(self._entries):
            await self.delete(stream_id)

    def _wake(self, entry: _Entry) -> None:
        # Followers wait on the current event; a fresh one for the next change.
        changed, entry.changed = entry.changed, asyncio.Event()
        changed.set()

    def _expire(self) -> None:
        now = time.monotonic()
        for stream_id, entry in list(self._entries.items()):
            if entry.closed_at is None:
                if now - entry.touched_at > self._running_ttl_s:
                    self._drop(stream_id, entry)
                continue
            ttl = entry.ttl_s if entry.ttl_s is not None else self._ttl_s
            if now - entry.closed_at > ttl:
                self._drop(stream_id, entry)

    def _make_room(self, size: int) -> None:
        self._expire()
        if self._bytes + size <= self._max_bytes:
            return
        for stream_id, entry in list(self._entries.items()):
            if entry.closed_at is not None:
                self._drop(stream_id, entry)
                if self._bytes + size <= self._max_bytes:
                    return

    def _drop(self, stream_id: str, entry: _Entry) -> None:
        del self._entries[stream_id]
        self._bytes -= entry.size
        self._wake(entry)
