"""AWS's binary event stream (``application/vnd.amazon.eventstream``), decoded
incrementally and bounded.

The format (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html,
https://smithy.io/2.0/aws/amazon-eventstream.html): each message is
``[total length: u32][headers length: u32][prelude CRC32: u32][headers]
[payload][message CRC32: u32]``, big-endian, the prelude CRC over the first 8
bytes and the message CRC over everything before it. Headers are typed
name/value pairs; Bedrock's ``ConverseStream`` sends ``:message-type``
(``event`` or ``exception``), ``:event-type`` / ``:exception-type`` and
``:content-type``, with a JSON payload.

Parsing and the CRC checks are botocore's own
(:class:`botocore.eventstream.EventStreamBuffer`, what the AWS SDK for Python
reads the same streams with). :class:`EventStreamDecoder` adds what the
gateway needs around it:

- **a bound**: a message's total length is read from its prelude as soon as
  its first 12 bytes arrive, and a message longer than ``max_message_bytes``
  raises before any more of it is buffered;
- **linear work**: bytes of an incomplete message are kept as pieces and
  handed to botocore once the message is whole (``EventStreamBuffer`` copies
  its whole buffer on every ``add_data``);
- **typed errors**: a bad CRC, a malformed prelude or header, a message too
  short or too long, and a stream that ends inside a message are all
  :class:`~gateway.errors.UpstreamProtocolError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple, cast

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from ..errors import UpstreamProtocolError

PRELUDE_BYTES = 12
"""Total length, headers length, prelude CRC: three big-endian u32."""
MIN_MESSAGE_BYTES = PRELUDE_BYTES + 4
"""A message with no headers and no payload: prelude and message CRC."""
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""1 MiB, the SSE decoder's bound: far above any real Converse event (a
tool-use input delta is a few KB)."""

_U32 = struct.Struct("!I")


class EventMessage(NamedTuple):
    """One decoded message: ``:message-type`` (``event``, ``exception`` or
    ``error``), its ``:event-type`` / ``:exception-type`` (or ``:error-code``)
    and the raw payload (JSON for Bedrock); ``headers`` holds every header."""

    message_type: str
    type: str
    payload: bytes
    headers: dict[str, object]


class EventStreamDecoder:
    """Feed body bytes as they arrive; get back the messages they complete.

    One per response, not thread-safe. :meth:`feed` raises
    :class:`~gateway.errors.UpstreamProtocolError` (see the module docstring)
    after the messages before the failure;
    :meth:`end` raises it when the body ended inside a message. Memory held:
    at most one message (``max_message_bytes``) plus one read.
    """

    __slots__ = ("_buffer", "_have", "_max", "_need", "_pieces")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._buffer = EventStreamBuffer()
        self._pieces: list[bytes] = []
        self._have = 0
        self._need = PRELUDE_BYTES
        """Bytes that must be held before anything new can be decoded."""

    def feed(self, data: bytes) -> Iterator[EventMessage]:
        """The messages ``data`` completes (possibly none), in order, as a
        generator: the messages before a malformed one are yielded before
        its error is raised (consume it whole)."""
        self._pieces.append(data)
        self._have += len(data)
        if self._have < self._need:
            return
        held = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        cut, error = self._whole(held)
        tail = held[cut:]
        self._pieces = [tail] if tail else []
        self._have = len(tail)
        if cut:
            self._buffer.add_data(held[:cut] if tail else held)
            try:
                for message in self._buffer:
                    yield _typed(message)
            except (ParserError, struct.error, KeyError, IndexError, UnicodeDecodeError) as exc:
                raise UpstreamProtocolError(
                    "The upstream sent a malformed event-stream message",
                    detail=f"{type(exc).__name__}: {exc}",
                ) from None
        if error is not None:
            raise error

    def _whole(self, held: bytes) -> tuple[int, UpstreamProtocolError | None]:
        """How many leading bytes of ``held`` are whole messages, and the
        error of a message length out of bounds after them (found as soon
        as that message's prelude is there); sets :attr:`_need` for the
        message after them."""
        pos, size = 0, len(held)
        while size - pos >= PRELUDE_BYTES:
            (total,) = _U32.unpack_from(held, pos)
            if total < MIN_MESSAGE_BYTES or total > self._max:
                what = "of an invalid length" if total < MIN_MESSAGE_BYTES else "too large"
                return pos, UpstreamProtocolError(
                    f"The upstream sent an event-stream message {what}",
                    detail=f"message length {total} (bounds {MIN_MESSAGE_BYTES}..{self._max})",
                )
            if size - pos < total:
                self._need = total
                return pos, None
            pos += total
        self._need = PRELUDE_BYTES
        return pos, None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return self._have

    def end(self) -> None:
        """The body ended: raises if it ended inside a message."""
        if self._have:
            raise UpstreamProtocolError(
                "The upstream response ended in the middle of an event-stream message",
                detail=f"{self._have} bytes of an incomplete message",
            )


def _typed(message: EventStreamMessage) -> EventMessage:
    # botocore-stubs types ``headers`` as int; botocore builds it as a dict.
    headers = cast(dict[str, object], message.headers)
    kind = headers.get(":message-type")
    if kind == "event":
        name = headers.get(":event-type")
    elif kind == "exception":
        name = headers.get(":exception-type")
    elif kind == "error":
        name = headers.get(":error-code")
    else:
        raise UpstreamProtocolError(
            "The upstream sent an event-stream message of an unknown type",
            detail=f":message-type {kind!r}",
        )
    if not isinstance(name, str):
        raise UpstreamProtocolError(
            "The upstream sent an event-stream message without its type",
            detail=f"headers {sorted(headers)!r}"[:300],
        )
    return EventMessage(kind, name, message.payload, headers)
