"""Server-Sent Events toward the client, with a drain after every event.

Wire format: the WHATWG HTML "Server-sent events" section
(https://html.spec.whatwg.org/multipage/server-sent-events.html). Each event is
``event:``/``id:``/``data:`` lines and a blank line; a comment line starts with
``:``.

The drain is the backpressure: :meth:`SSEResponse.send` returns only once the
connection's write buffer is below its low-water mark, so the stream pulls
the next upstream chunk only after the client took this one. aiohttp's own
``write()`` awaits drain only every 64 KiB, which is why we drain ourselves.

One writer: only the stream that owns the response writes to it (events and
``: ping`` heartbeats alike), so nothing here is locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import sys
import termios
import time

from aiohttp import web
from aiohttp.http_writer import StreamWriter

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
HEARTBEAT = b": ping\n\n"
BLANK_HEARTBEAT = b"\n"
"""A heartbeat for clients that read every non-empty line as JSON (Google's
``google-genai`` SDK): an empty line ends no event when none is pending
(WHATWG HTML, "dispatch the event": an empty data buffer dispatches
nothing), and still moves bytes through every proxy."""

KERNEL_PROBE_EVERY = 16
"""Read the kernel send queue (``TIOCOUTQ``) on every this-many-th event, and
on every event while asyncio's buffer is non-empty (the client is behind)."""

_TIOCOUTQ = getattr(termios, "TIOCOUTQ", None) if sys.platform.startswith("linux") else None
_INT = struct.Struct("i")


def _plain(writer: StreamWriter) -> bool:
    """Whether ``writer`` adds nothing to a payload but chunk framing (no
    compression, no declared length, no write callbacks), so that an event
    may bypass it (aiohttp 3.14's ``StreamWriter.write``)."""
    return (
        writer._compress is None
        and writer.length is None
        and writer._on_chunk_sent is None
        and writer.on_body_write is None
    )


class SlowClientError(Exception):
    """The client took no bytes for ``send_timeout_s`` while its buffer was full."""


class SSEResponse:
    """An SSE response whose :meth:`send` waits for the client's socket.

    ``buffer_bytes`` bounds what may sit queued toward this client: half goes to
    the kernel send buffer (``SO_SNDBUF``; Linux doubles the requested value for
    bookkeeping), a quarter to asyncio's transport high-water mark. Without
    this, loopback lets a stalled client fall ~4 MB behind unseen (docs/architecture.md).
    The bound is set when the response is committed (:meth:`prepare`: a
    request refused before that never touched the socket) and the
    connection's previous settings come back in :meth:`finish` or
    :meth:`release`, so a keep-alive connection's next request does not
    inherit this stream's bound.
    """

    __slots__ = (
        "_buffer_bytes",
        "_direct",
        "_fd",
        "_heartbeat",
        "_kernel",
        "_probe_in",
        "_protocol",
        "_request",
        "_response",
        "_restore",
        "_send_timeout",
        "_transport",
        "_writer",
        "bytes_sent",
        "events_sent",
        "last_write",
        "max_queued",
        "pings",
    )

    def __init__(
        self,
        request: web.Request,
        *,
        buffer_bytes: int,
        send_timeout_s: float,
        heartbeat: bytes = HEARTBEAT,
    ) -> None:
        self._request = request
        self._heartbeat = heartbeat
        self._send_timeout = send_timeout_s
        self._response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        self._fd = -1
        self._kernel = 0
        self._probe_in = 0
        self._transport: asyncio.Transport | None = None
        self._writer: StreamWriter | None = None
        self._direct = False
        """After the first event: events go straight to the transport (see :meth:`send`)."""
        self._protocol = request.protocol
        self._restore: tuple[int, int, int] | None = None
        self.bytes_sent = 0
        self.events_sent = 0
        self.pings = 0
        self.max_queued = 0
        self.last_write = time.perf_counter()
        self._buffer_bytes = buffer_bytes

    def _bound(self, buffer_bytes: int) -> None:
        # Not isinstance(asyncio.Transport): uvloop's transports are no subclass.
        transport = self._request.transport
        if transport is None:
            return
        self._transport = transport
        low, high = transport.get_write_buffer_limits()
        sndbuf = -1
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(2048, buffer_bytes // 2))
            self._fd = sock.fileno()
        self._restore = (low, high, sndbuf)
        transport.set_write_buffer_limits(high=max(1024, buffer_bytes // 4))

    def release(self) -> None:
        """Give the connection its previous buffer settings back (idempotent)."""
        transport, restore = self._transport, self._restore
        if transport is None or restore is None or transport.is_closing():
            return
        self._restore = None
        low, high, sndbuf = restore
        transport.set_write_buffer_limits(high=high, low=low)
        sock = transport.get_extra_info("socket")
        if sndbuf > 0 and sock is not None:
            # getsockopt reports the doubled value; setting half of it gives it back.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf // 2)

    @property
    def prepared(self) -> bool:
        return self._writer is not None

    async def prepare(self) -> None:
        """Commit the response (status and SSE headers; once). aiohttp holds
        the headers until the first write, which is always right after (an
        event or a ping), so they share its packet. Raises ``ConnectionError``
        if the client is gone."""
        if self._writer is not None:
            return
        if self._restore is None:
            self._bound(self._buffer_bytes)
        writer = await self._response.prepare(self._request)
        if not isinstance(writer, StreamWriter):  # pragma: no cover - aiohttp internals
            raise TypeError(f"unexpected payload writer {type(writer)!r}")
        self._writer = writer
        self.last_write = time.perf_counter()

    async def ping(self) -> None:
        """Commit the response if needed and send a ``: ping`` comment, unless
        the client's buffer is full (a client that is not reading gains
        nothing from a ping). Does not wait for drain. Raises
        ``ConnectionError`` if the client is gone."""
        await self.prepare()
        writer = self._writer
        assert writer is not None
        if not self._protocol.writing_paused:
            await writer.write(self._heartbeat, drain=False)
            self.pings += 1
        self.last_write = time.perf_counter()

    async def send(self, data: bytes) -> float:
        """Write ``data`` and wait until the client's socket took it.

        Returns the seconds the drain waited (0.0 when the buffer was below its
        high-water mark). Raises ``ConnectionError`` when the client is gone and
        :class:`SlowClientError` when a drain exceeds ``send_timeout_s``.
        """
        writer = self._writer
        assert writer is not None, "prepare() first"
        if self._direct:
            # The transport directly, framed as aiohttp would (one chunk of
            # HTTP/1.1 chunked encoding, RFC 9112 section 7.1): the same bytes
            # without aiohttp's write coroutine, about 1.5 us an event.
            transport = self._transport
            assert transport is not None
            if transport.is_closing():
                raise ConnectionResetError("Cannot write to closing transport")
            framed = b"%x\r\n%b\r\n" % (len(data), data) if writer.chunked else data
            transport.write(framed)
            writer.output_size += len(framed)  # the response's body_length (summary line)
        else:
            # The first event goes through aiohttp: it carries the held headers.
            await writer.write(data, drain=False)
            self._direct = self._transport is not None and _plain(writer)
        self.bytes_sent += len(data)
        self.events_sent += 1
        if not self._protocol.writing_paused:
            self.last_write = time.perf_counter()
            return 0.0
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._send_timeout):
                await writer.drain()
        except TimeoutError:
            raise SlowClientError(f"client took nothing for {self._send_timeout} s") from None
        self.last_write = now = time.perf_counter()
        return now - started

    async def send_many(self, datas: list[bytes]) -> float:
        """:meth:`send` for several events at once: one write (one HTTP chunk)
        and one drain; each counts as an event. ``datas`` is not empty."""
        waited = await self.send(b"".join(datas) if len(datas) > 1 else datas[0])
        self.events_sent += len(datas) - 1
        return waited

    send_last = send
    """:class:`~gateway.downstream.Downstream`: a socket's last event is any event."""

    def queued_bytes(self) -> int:
        """Bytes written but not yet acknowledged toward this client.

        asyncio's transport buffer plus the kernel send queue (``TIOCOUTQ``,
        Linux; elsewhere only the transport buffer). The kernel figure is
        re-read every :data:`KERNEL_PROBE_EVERY` events, and on every event
        while asyncio's buffer is non-empty; in between its last reading
        stands. Tracks the maximum seen.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return 0
        queued = transport.get_write_buffer_size()
        if self._fd >= 0 and _TIOCOUTQ is not None:
            self._probe_in -= 1
            if queued or self._probe_in <= 0:
                self._probe_in = KERNEL_PROBE_EVERY
                try:
                    self._kernel = _INT.unpack(fcntl.ioctl(self._fd, _TIOCOUTQ, b"\0\0\0\0"))[0]
                except OSError:
                    self._kernel = 0
            queued += self._kernel
        if queued > self.max_queued:
            self.max_queued = queued
        return queued

    async def finish(self) -> None:
        """End the response (terminating chunk) and give the connection its
        previous buffer settings back. Ignores a client already gone."""
        self.release()
        if self._writer is None:
            return
        with contextlib.suppress(ConnectionError):
            await self._response.write_eof()

    def abort(self) -> None:
        """Drop the connection at once (a client we give up on)."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    def ended(self, status: object) -> None:
        """:class:`~gateway.downstream.Downstream`: nothing to do for a socket."""
        return None
