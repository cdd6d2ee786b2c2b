"""The stream store in this process's memory (the default; one process only).

Bounded three ways: a per-stream byte bound (:class:`~gateway.store.base.StreamTooLarge`
stops the producer), a total byte bound (the oldest finished streams are
evicted first; when only running streams remain, appends that would pass it
fail as too large), and a TTL for finished streams.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ..errors import StreamCancelled, StreamGone
from .base import StoredStream, StreamTooLarge


@dataclass(slots=True)
class _Entry:
    owner: str | None
    status: str = "in_progress"
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    snapshot: bytes | None = None
    closed_at: float | None = None
    cancel: bool = False
    context: bytes | None = None
    ttl_s: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStreamStore:
    """See the module docstring; implements :class:`~gateway.store.base.StreamStore`."""

    def __init__(self, *, ttl_s: float, max_bytes: int, stream_max_bytes: int) -> None:
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._stream_max_bytes = stream_max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    @property
    def held_bytes(self) -> int:
        """Bytes of events held now, all streams."""
        return self._bytes

    async def create(self, stream_id: str, owner: str | None, context: bytes | None = None) -> None:
        self._expire()
        self._entries[stream_id] = _Entry(owner, context=context)

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
        if entry.size + size > self._stream_max_bytes and not final:
            raise StreamTooLarge(
                f"The stream passed the store's bound of {self._stream_max_bytes} bytes"
            )
        self._make_room(size)
        if self._bytes + size > self._max_bytes and not final:
            raise StreamTooLarge("The stream store is full")
        entry.events.extend(events)
        entry.size += size
        self._bytes += size
        if snapshot is not None:
            entry.snapshot = snapshot
        self._wake(entry)
        return len(entry.events) - 1

    async def close(
        self,
        stream_id: str,
        status: str,
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

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[bytes]:
        index = after + 1
        while True:
            entry = self._entries.get(stream_id)
            if entry is None:
                return
            while index < len(entry.events):
                yield entry.events[index]
                index += 1
                if self._entries.get(stream_id) is not entry:
                    return  # deleted while we were writing
            if entry.closed_at is not None:
                return
            changed = entry.changed
            await changed.wait()

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
            ttl = entry.ttl_s if entry.ttl_s is not None else self._ttl_s
            if entry.closed_at is not None and now - entry.closed_at > ttl:
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
