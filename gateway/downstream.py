"""Where a stream's events go: the client's socket, the stream store, or both.

:class:`Downstream` is what :class:`~gateway.stream.Stream` writes to.
:class:`~gateway.sse.SSEResponse` is the client's socket (drain per event);
:class:`StoreDownstream` is the stream store, for a background response
whose generation outlives its request; :class:`TeeDownstream` writes to the
client and keeps a copy in the store (a stored response a client may read
again). Store writes are backpressured by the store's own bound: past it the
producer stops with :class:`~gateway.store.base.StreamTooLarge`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import orjson
import structlog
from aiohttp import web

from .errors import GatewayError, StreamCancelled
from .store.base import StoredStatus, StreamStore, StreamTooLarge

log = structlog.get_logger("gateway.downstream")

LIFECYCLE = (
    b"event: response.created\n",
    b"event: response.in_progress\n",
    b"event: response.completed\n",
    b"event: response.incomplete\n",
    b"event: response.failed\n",
)
"""Events that carry the whole Response object: its latest is the snapshot."""


class Downstream(Protocol):
    """The stream core's sink (the attributes are counters it reports)."""

    @property
    def bytes_sent(self) -> int: ...

    @property
    def events_sent(self) -> int: ...

    @property
    def last_write(self) -> float: ...

    @property
    def max_queued(self) -> int: ...

    @property
    def pings(self) -> int: ...

    @property
    def prepared(self) -> bool: ...

    @property
    def response(self) -> web.StreamResponse | None: ...

    async def prepare(self) -> None: ...

    async def send(self, data: bytes) -> float: ...

    async def send_last(self, data: bytes) -> float:
        """:meth:`send` for the event that ends a failed stream: a store keeps
        it even past its bound or a cancel (a stream always ends with its
        terminal event, wherever it was stopped)."""
        ...

    async def ping(self) -> None: ...

    def queued_bytes(self) -> int: ...

    async def finish(self) -> None: ...

    def abort(self) -> None: ...

    def release(self) -> None: ...

    def ended(self, status: StoredStatus) -> None:
        """The stream is over with ``status``, whatever path ended it; never
        raises, never waits."""
        ...


class StoreWriter:
    """Appends one stream's SSE events to the store, keeping the Response
    snapshot current; see the module docstring."""

    def __init__(self, store: StreamStore, stream_id: str, ttl_s: float | None = None) -> None:
        self._store = store
        self._id = stream_id
        self._ttl_s = ttl_s
        self._snapshot: bytes | None = None
        self.status = StoredStatus.IN_PROGRESS
        """The Response status of the latest lifecycle event written."""
        self.stopped: GatewayError | None = None
        """Why the store refused an append (too large, cancelled): the stream's
        closing events are still kept, past the bound, once."""
        self._closed = False

    async def write(self, data: bytes, *, final: bool = False) -> None:
        """Append the events in ``data``. Raises :class:`StreamTooLarge` or
        :class:`~gateway.errors.StreamCancelled` (once: after it, and for a
        ``final`` write, the stream's closing events are kept past the bound
        and the cancel)."""
        events = [e + b"\n\n" for e in data.split(b"\n\n") if e]
        snapshot = None
        for event in events:
            if event.startswith(LIFECYCLE):
                payload = orjson.loads(event.split(b"\ndata: ", 1)[1])
                response = payload.get("response") or {}
                self.status = _status(response.get("status"), self.status)
                snapshot = orjson.dumps(response)
        try:
            await self._store.append(
                self._id, events, snapshot, final=final or self.stopped is not None
            )
        except (StreamTooLarge, StreamCancelled) as err:
            self.stopped = err
            raise
        if snapshot is not None:
            self._snapshot = snapshot

    def close(self, status: StoredStatus | None = None) -> None:
        """Close the stored stream (in the background: never raises, never waits,
        so it also runs from a cancelled task); ``status`` None: the status of
        the last lifecycle event written."""
        if self._closed:
            return
        self._closed = True
        final = status or self.status
        if final is StoredStatus.COMPLETED and not self.status.running:
            final = self.status  # what the stream's own last Response says
        if final.running:
            final = StoredStatus.FAILED
        task = asyncio.get_running_loop().create_task(
            self._store.close(self._id, final, ttl_s=self._ttl_s)
        )
        _CLOSING.add(task)
        task.add_done_callback(_closed)


_CLOSING: set[asyncio.Task[None]] = set()
"""Store closes in flight (a reference, so none is collected before it ran)."""


def _closed(task: asyncio.Task[None]) -> None:
    _CLOSING.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("stored_stream_close_failed", error=repr(exc))


def _status(value: object, current: StoredStatus) -> StoredStatus:
    try:
        return StoredStatus(str(value))
    except ValueError:
        return current


class StoreDownstream:
    """The store as the only downstream: a background response's generation."""

    response = None

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self.bytes_sent = 0
        self.events_sent = 0
        self.last_write = time.perf_counter()
        self.max_queued = 0
        self.pings = 0

    @property
    def prepared(self) -> bool:
        return True

    async def prepare(self) -> None:
        return None

    async def send(self, data: bytes) -> float:
        await self._writer.write(data)
        self.bytes_sent += len(data)
        self.events_sent += 1
        self.last_write = time.perf_counter()
        return 0.0

    async def send_last(self, data: bytes) -> float:
        await self._writer.write(data, final=True)
        self.bytes_sent += len(data)
        self.events_sent += 1
        return 0.0

    async def ping(self) -> None:
        self.last_write = time.perf_counter()

    def queued_bytes(self) -> int:
        return 0

    async def finish(self) -> None:
        return None  # closed in ended(), after everything was written

    def abort(self) -> None:
        return None

    def release(self) -> None:
        return None

    def ended(self, status: StoredStatus) -> None:
        self._writer.close(status)


class TeeDownstream:
    """The client's SSE response, with a copy of every event in the store. A
    store that cannot keep the stream (too large, unreachable) stops keeping
    it; the client's stream goes on."""

    def __init__(self, sse: Downstream, writer: StoreWriter) -> None:
        self._sse = sse
        self._writer: StoreWriter | None = writer

    @property
    def bytes_sent(self) -> int:
        return self._sse.bytes_sent

    @property
    def events_sent(self) -> int:
        return self._sse.events_sent

    @property
    def last_write(self) -> float:
        return self._sse.last_write

    @property
    def max_queued(self) -> int:
        return self._sse.max_queued

    @property
    def pings(self) -> int:
        return self._sse.pings

    @property
    def prepared(self) -> bool:
        return self._sse.prepared

    @property
    def response(self) -> web.StreamResponse | None:
        return self._sse.response

    async def prepare(self) -> None:
        await self._sse.prepare()

    async def send(self, data: bytes) -> float:
        waited = await self._sse.send(data)
        await self._keep(data, final=False)
        return waited

    async def send_last(self, data: bytes) -> float:
        waited = await self._sse.send_last(data)
        await self._keep(data, final=True)
        return waited

    async def _keep(self, data: bytes, *, final: bool) -> None:
        writer = self._writer
        if writer is not None:
            try:
                await writer.write(data, final=final)
            except GatewayError:
                writer.close(StoredStatus.FAILED)
                self._writer = None

    async def ping(self) -> None:
        await self._sse.ping()

    def queued_bytes(self) -> int:
        return self._sse.queued_bytes()

    async def finish(self) -> None:
        await self._sse.finish()

    def abort(self) -> None:
        self._sse.abort()

    def release(self) -> None:
        self._sse.release()

    def ended(self, status: StoredStatus) -> None:
        if self._writer is not None:
            self._writer.close(status)
