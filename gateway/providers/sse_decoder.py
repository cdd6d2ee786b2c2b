"""An incremental Server-Sent Events decoder for upstream response bodies.

Follows the WHATWG HTML standard, "Server-sent events", section 9.2.6
"Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- lines end with ``\\r\\n``, ``\\n`` or ``\\r`` (also split across reads);
- a leading UTF-8 byte order mark is skipped;
- ``:``-lines are comments; ``field: value`` strips one space after the colon;
  a line without a colon is a field with an empty value;
- ``data`` lines accumulate, joined with ``\\n``; a blank line dispatches the
  event (no event without data); ``event`` names it; ``id`` sets it (an id
  containing NUL is ignored); ``retry`` and unknown fields are ignored;
- an incomplete event at end of stream is discarded.

Values stay bytes: same-dialect paths relay ``data`` byte for byte, and
``orjson.loads`` takes bytes. A line longer than ``max_line_bytes`` (or an
event whose data grows past it) raises
:class:`~gateway.errors.UpstreamProtocolError`: an upstream that never ends a
line must not grow our memory. Each ``data`` line counts its bytes on the
wire (``data:`` and the line end included) toward that bound, so empty
``data:`` lines cannot pile up without limit.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import UpstreamProtocolError
from .base import tuple_new

DEFAULT_MAX_LINE_BYTES = 1 << 20
"""1 MiB: far above any real chunk (a tool-call delta is a few KB)."""

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event: ``data`` (lines joined by ``\\n``), ``event`` name
    (None for the default ``message``), and the ``id`` field if this event set one."""

    data: bytes
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events they complete.

    Not thread-safe; one per upstream response. Raises
    :class:`~gateway.errors.UpstreamProtocolError` for an over-long line or
    event, or a non-UTF-8 event name or id.

    Work and memory are linear in the bytes fed, whatever their shape: an
    unfinished line is kept as its pieces (joined once, when its line end
    arrives), and an event's pending data is a running count in which each
    ``data`` line costs its bytes on the wire (``data:`` and the line end
    included), so a flood of empty ``data:`` lines reaches ``max_line_bytes``
    as surely as one long line does.
    """

    __slots__ = (
        "_data",
        "_event",
        "_id",
        "_max",
        "_partlen",
        "_parts",
        "_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._parts: list[bytes] = []
        """An unfinished line, as the pieces it arrived in (none holds a line end)."""
        self._partlen = 0
        self._data: list[bytes] = []
        self._size = 0
        """The pending event's cost: its data lines' bytes, line ends included."""
        self._event: str | None = None
        self._id: str | None = None
        self._skip_lf = False
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events that ``chunk`` completes, in order (often none or one)."""
        if (
            # The common reads: exactly one whole event, nothing pending.
            self._started
            and not self._parts
            and not self._data
            and not self._skip_lf
            and chunk.endswith(b"\n\n")
            and 13 not in chunk  # b"\r"; an int is a memchr, a bytes needle ~8x that
        ):
            lines = chunk.count(b"\n")
            if lines == 2 and chunk.startswith(b"data: "):  # OpenAI's
                event = tuple_new(SSEEvent, (chunk[6:-2], self._event, self._id))
                self._event = self._id = None
                if len(event.data) > self._max:
                    self._too_large()
                return [event]
            if lines == 3 and chunk.startswith(b"event: "):  # Anthropic's, Responses'
                end = chunk.index(b"\n")
                if chunk.startswith(b"data: ", end + 1):
                    name = _text(chunk[7:end], "event name")
                    event = tuple_new(SSEEvent, (chunk[end + 7 : -2], name, self._id))
                    self._event = self._id = None
                    if len(event.data) > self._max:
                        self._too_large()
                    return [event]
        if not self._started:
            chunk = b"".join(self._parts) + chunk
            self._parts, self._partlen = [], 0
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                if chunk:
                    self._parts, self._partlen = [chunk], len(chunk)
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if 13 in chunk:  # b"\r"
            # Rare on the wire; normalise to \n. A trailing \r ends its line
            # now, and a \n that starts the next read belongs to it.
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            if chunk:
                self._parts.append(chunk)
                self._partlen += len(chunk)
                self._check(self._partlen)
            return []
        if self._parts:
            buf = b"".join(self._parts) + chunk
            end += self._partlen
            self._parts = []
        else:
            buf = chunk
        tail = buf[end + 1 :]
        if tail:
            self._parts.append(tail)
            self._check(len(tail))
        self._partlen = len(tail)
        events: list[SSEEvent] = []
        data, size, limit = self._data, self._size, self._max
        for line in buf[:end].split(b"\n"):
            if line.startswith(b"data: "):
                data.append(line[6:])
                size += len(line) + 1
                if size > limit:
                    self._too_large()
            elif not line:
                if data:
                    joined = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(SSEEvent(joined, self._event, self._id))
                    data = self._data = []
                    size = 0
                self._event = self._id = None
            elif line[0] != 0x3A:  # ":" starts a comment
                value = self._field(line)
                if value is not None:
                    data.append(value)
                    size += len(line) + 1
                    if size > limit:
                        self._too_large()
        self._size = size
        return events

    def _field(self, line: bytes) -> bytes | None:
        """Apply a non-comment field line; returns a ``data`` field's value
        (for the caller to add to the event) and None for any other field."""
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            return value
        if name == b"event":
            self._event = _text(value, "event name")
        elif name == b"id" and b"\0" not in value:
            self._id = _text(value, "event id")
        return None

    def _check(self, pending: int) -> None:
        if pending > self._max:
            raise UpstreamProtocolError(
                "The upstream sent a line longer than the gateway accepts",
                detail=f"SSE line over {self._max} bytes without a line end",
            )

    def _too_large(self) -> None:
        raise UpstreamProtocolError(
            "The upstream sent an event larger than the gateway accepts",
            detail=f"SSE event data lines over {self._max} bytes",
        )


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise UpstreamProtocolError(
            "The upstream sent an event stream that is not UTF-8", detail=f"{what}: {value[:80]!r}"
        ) from None
