"""A stored stream read back as an upstream, so the stream core relays it.

Reading a stored stream (``GET /v1/streams/{id}``, ``GET
/v1/responses/{id}?stream=true``, the first reader of a resumable or
background stream) is not a loop of its own: :class:`StoredProvider` opens a
:class:`StoredUpstream` over :meth:`~gateway.store.base.StreamStore.read`,
and :class:`StoredEncoder` relays each stored SSE event as it was written
(with an ``id:`` line for resumable Chat Completions streams), so the same
:class:`~gateway.stream.Stream` as a live request serves it: admission,
heartbeats, timers, slow-client abort, metrics, one outcome and one error
path.

Store errors are upstream errors here: :class:`~gateway.errors.ProducerLost`
and :class:`~gateway.errors.StoreUnavailable` raised by ``read`` end the
reader with an error event in its dialect (or an HTTP error before the
first event).

SSE ids: event ``n`` (0-based, as the store numbers them) goes out as
``id: n + 1``, so a browser's ``Last-Event-ID`` is the count of events it
has (WHATWG HTML, "Server-sent events").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from .dialects.frames import EMPTY, Frame, Usage
from .downstream import LIFECYCLE
from .errors import GatewayError
from .providers.base import Dialect, UpstreamChunk
from .store.base import StreamStore

READ_WAIT_S = 1.0
"""How long one store read waits for a new event before it asks again (a
Redis store checks the producer's lease between two reads)."""

ErrorEvent = Callable[[GatewayError, int, "bytes | None"], bytes]
"""``(error, number, snapshot) -> SSE event``: the event that ends a reader
whose store could not go on (``number``: the 0-based number the event would
have; ``snapshot``: the stream's latest stored object, if any)."""

_NO_PAYLOAD: dict[str, Any] = {}
_NO_USAGE = Usage()
_NOTHING = UpstreamChunk(b"", _NO_PAYLOAD)
"""Stands for an empty replay (a reader already at the end): the stream core
wants a first chunk, and this one encodes to nothing."""


class StoredUpstream:
    """The events of one stored stream after ``after``, then live ones, until
    the stream ends; implements :class:`~gateway.providers.base.UpstreamStream`.

    Cancel-safe: ``read`` consumes nothing while it waits, and the events it
    returned are kept here until taken."""

    __slots__ = ("_after", "_ended", "_first", "_id", "_pending", "_store")

    def __init__(self, store: StreamStore, stream_id: str, after: int) -> None:
        self._store = store
        self._id = stream_id
        self._after = after
        self._pending: deque[bytes] = deque()
        self._ended = False
        self._first = True

    async def next(self) -> UpstreamChunk | None:
        while not self._pending:
            if self._ended:
                return None
            got = await self._store.read(self._id, self._after, READ_WAIT_S)
            self._pending.extend(got.events)
            self._after += len(got.events)
            self._ended = got.ended
            if self._first and self._ended and not self._pending:
                self._first = False
                return _NOTHING
        self._first = False
        return UpstreamChunk(self._pending.popleft(), _NO_PAYLOAD)

    def close(self) -> None:
        self._ended = True
        self._pending.clear()

    def release(self) -> None:
        self.close()


class StoredProvider:
    """Opens one stored stream at an offset; a
    :class:`~gateway.providers.base.Provider` for one reader."""

    kind = "store"
    dialect: Dialect = "openai"  # unused: stored events are in the client's dialect

    def __init__(self, store: StreamStore, stream_id: str, after: int) -> None:
        self._store = store
        self._id = stream_id
        self._after = after

    async def open_stream(self, body: dict[str, Any]) -> StoredUpstream:
        return StoredUpstream(self._store, self._id, self._after)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("a stored stream is only read as a stream")

    async def aclose(self) -> None:
        return None


class StoredEncoder:
    """Relays stored SSE events unchanged (``with_ids``: an ``id:`` line first)
    and ends a failed reader with ``end_with``'s event (no id: a reader that
    comes back resumes from its last real event and is told the same).

    Keeps the latest Response object it relayed (from the lifecycle events
    that carry one) for that event, starting from the stored ``snapshot``."""

    __slots__ = ("_end_with", "_next", "_snapshot", "_with_ids", "relayed")

    def __init__(
        self, after: int, *, with_ids: bool, end_with: ErrorEvent, snapshot: bytes | None
    ) -> None:
        self._next = after + 1
        self._with_ids = with_ids
        self._end_with = end_with
        self._snapshot = snapshot
        self.relayed = 0
        """Stored events relayed so far."""

    def encode(self, chunk: UpstreamChunk) -> Frame:
        data = chunk.data
        if not data:
            return EMPTY
        number = self._next
        self._next = number + 1
        self.relayed += 1
        if data.startswith(LIFECYCLE):
            self._snapshot = _response_of(data, self._snapshot)
        if self._with_ids:
            data = b"id: %d\n%b" % (number + 1, data)
        return Frame(data, True)

    def finish(self) -> bytes:
        return b""  # the stored stream carries its own end

    def usage(self) -> Usage:
        """None of its own: the generation reported (or estimated) the stream's."""
        return _NO_USAGE

    def error(self, err: GatewayError) -> bytes:
        return self._end_with(err, self._next, self._snapshot)


def _response_of(event: bytes, current: bytes | None) -> bytes | None:
    """The ``response`` object of a lifecycle event, as JSON bytes."""
    try:
        payload = orjson.loads(event.split(b"\ndata: ", 1)[1])
    except (IndexError, orjson.JSONDecodeError):
        return current
    response = payload.get("response") if isinstance(payload, dict) else None
    return orjson.dumps(response) if isinstance(response, dict) else current
