"""A large JSON request body split at its top level: the few small fields the
gateway reads, decoded; the bulk (``messages``, ``tools``, ``system``, ...)
kept as the client's own bytes.

Why: a 32 MB agent request parsed into Python objects (``orjson.loads``,
~1-2 ms/MB), validated and serialised again (``orjson.dumps``, ~0.5-0.8
ms/MB) holds the event loop for ~100 ms, and every other stream waits
(issue 26; figures in docs/architecture.md). ``msgspec`` decodes the top
level into ``dict[str, msgspec.Raw]``: it checks the whole document's JSON
syntax while skipping the values (~0.3-0.45 ms/MB, no object built for
them), and each ``Raw`` is a slice of the client's bytes. Sending upstream
is then those slices, behind the edited small fields, written in 256 KiB
pieces (:meth:`SplitBody.encode`, :class:`Encoded`): no copy of the bulk.

:class:`SplitBody` is a ``dict`` of the small fields (so code that reads
``model`` or ``stream_options`` reads it as before) that also holds the
bulk; :meth:`SplitBody.get` decodes a bulk field on first use (the usage
estimate reads ``messages`` only when an upstream reports no usage). A
provider that sends it must declare ``takes_split_body = True``
(:mod:`gateway.providers.base`); every other path gets the whole body
decoded (:meth:`SplitBody.whole`).

JSON: RFC 8259. Invalid UTF-8 is refused by the reader before the split
(``msgspec`` does not check it inside skipped strings).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, Final, NamedTuple

import msgspec
import orjson

from .errors import InvalidRequest

BULK_BYTES: Final = 16384
"""A top-level value at least this long stays raw bytes (the bulk)."""

SEND_BYTES: Final = 256 << 10
"""Slices of a split body handed to the upstream connection at a time."""
_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUE: Final = msgspec.json.Decoder(msgspec.Raw)
_WS: Final = b" \t\r\n"


Piece = bytes | memoryview | msgspec.Raw
"""A buffer holding part of a body's bytes."""


def _decode(raw: Piece) -> Any:
    return orjson.loads(memoryview(raw))


def _decode_bulk(parts: tuple[Piece, ...]) -> Any:
    return _decode(parts[0]) if len(parts) == 1 else orjson.loads(b"".join(parts))


class SplitBody(dict[str, Any]):
    """The small top-level fields, decoded (the dict's items), and the bulk
    (``bulk``: name -> the client's bytes of its value, in one or more pieces)."""

    __slots__ = ("_whole", "bulk", "size")

    def __init__(
        self, small: dict[str, Any], bulk: dict[str, tuple[Piece, ...]], size: int
    ) -> None:
        super().__init__(small)
        self.bulk = bulk
        self.size = size
        """Bytes of the whole body."""
        self._whole: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """A field, a bulk one decoded on first use (then kept decoded)."""
        if key in self.bulk and not dict.__contains__(self, key):
            self[key] = _decode_bulk(self.bulk[key])
        return dict.get(self, key, default)

    def whole(self) -> dict[str, Any]:
        """Every field decoded: a plain dict, for translation (the slow path;
        decoded once, then shared: callers must not change it)."""
        if self._whole is None:
            bulk = {k: _decode_bulk(v) for k, v in self.bulk.items() if k not in self}
            self._whole = {**self, **bulk}
        return self._whole

    def first_byte(self, key: str) -> int | None:
        """The first byte of a bulk value (``[``, ``{``, ``"``, ...), None if absent."""
        parts = self.bulk.get(key)
        if parts is None:
            return None
        view = memoryview(parts[0])
        return next((b for b in view[:64] if b not in _WS), None)

    def encode(self, small: dict[str, Any]) -> Encoded:
        """The body to send: ``small`` (these fields, edited by the provider)
        then every bulk field it does not override, as the client sent it
        (views of the client's bytes, never copied). Raises
        ``orjson.JSONEncodeError`` as ``orjson.dumps`` would."""
        head = orjson.dumps(small)
        rest = [(k, v) for k, v in self.bulk.items() if k not in small]
        if not rest:
            return Encoded((head,), len(head))
        parts: list[bytes | memoryview] = [head[:-1]]
        sep = b"," if len(head) > 2 else b""
        for key, pieces in rest:
            parts += (sep + orjson.dumps(key) + b":", *(memoryview(p) for p in pieces))
            sep = b","
        parts.append(b"}")
        return Encoded(tuple(parts), sum(len(p) for p in parts))


class Encoded(NamedTuple):
    """A request body as pieces (the provider's fields, views of the
    client's bytes), sent without joining them: :meth:`stream`, with
    ``Content-Length: size``."""

    parts: tuple[bytes | memoryview, ...]
    size: int

    async def stream(self) -> AsyncIterator[bytes | memoryview]:
        """The pieces in :data:`SEND_BYTES` slices, the loop let run between them."""
        for part in self.parts:
            for at in range(0, len(part), SEND_BYTES):
                yield part[at : at + SEND_BYTES]
                await asyncio.sleep(0)

    def join(self) -> bytes:
        """The whole body in one ``bytes`` (a copy; tests and small bodies)."""
        return b"".join(self.parts)


def split(raw: bytes | bytearray) -> SplitBody:
    """``raw`` (a whole JSON object) split at its top level. Raises
    :class:`InvalidRequest` for invalid JSON or a body that is not an object."""
    return _split(raw, len(raw))


def _split(doc: bytes | bytearray, size: int, cut: bytes = b"", middle: Piece = b"") -> SplitBody:
    """:func:`split`; the top-level value holding ``cut`` (if any) becomes a
    bulk value with ``middle`` in the cut's place."""
    try:
        fields = _DECODER.decode(doc)
    except msgspec.ValidationError:
        raise InvalidRequest("Request body must be a JSON object") from None
    except msgspec.DecodeError as err:
        raise InvalidRequest(f"Request body is not valid JSON: {err}") from None
    small: dict[str, Any] = {}
    bulk: dict[str, tuple[Piece, ...]] = {}
    for key, value in fields.items():
        at = bytes(value).find(cut) if cut and len(value) >= len(cut) else -1
        if at != -1:
            held = bytes(value)
            bulk[key] = (held[:at], middle, held[at + len(cut) :])
        elif len(value) >= BULK_BYTES:
            bulk[key] = (value,)
        else:
            try:
                small[key] = _decode(value)
            except orjson.JSONDecodeError as err:  # e.g. nesting orjson refuses
                raise InvalidRequest(f"Request body is not valid JSON: {err}") from None
    return SplitBody(small, bulk, size)


def whole(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with every field decoded (a :class:`SplitBody` made whole)."""
    return body.whole() if isinstance(body, SplitBody) else body


ELEMENT: Final = b'{"role"'
"""Where a chat message (or Responses item) begins. In valid JSON these
bytes are always an object's start, never inside a string: the ``"`` after
``{`` is unescaped, so it delimits a string, and as a closing quote it would
be followed by ``role``, which no JSON allows after a string."""


class Segmenter:
    """Validates a large body's array elements while the body arrives, so
    the one decode left at the end (:func:`split_segmented`) is small.

    Each :meth:`feed` looks at the new bytes for elements (:data:`ELEMENT`
    after a ``,``) and checks the elements it now holds whole as JSON
    values each followed by a ``,`` (one ``msgspec`` decode of them as an
    array, ~0.4 ms/MB, a chunk's worth at a time). ``ok`` turns False at
    the first run that is not: then the body is split whole as usual (a
    nested ``{"role"`` is not an error, only a reason for the slow path)."""

    __slots__ = ("_buf", "_checked", "_scan", "bounds", "ok")

    def __init__(self, buf: bytearray) -> None:
        self._buf = buf
        self._scan = 0
        self._checked = 0
        self.bounds: list[int] = []
        """Offsets of the elements found (each after a ``,``)."""
        self.ok = True

    def feed(self, end: int) -> None:
        """Look at ``buf[:end]`` (the bytes received so far)."""
        buf, bounds = self._buf, self.bounds
        at = buf.find(ELEMENT, self._scan, end)
        while at != -1:
            before = at - 1
            while before > 0 and buf[before] in _WS:
                before -= 1
            if buf[before] == 0x2C:  # ","
                bounds.append(at)
            at = buf.find(ELEMENT, at + 1, end)
        self._scan = max(self._scan, end - len(ELEMENT) + 1)
        last = len(bounds) - 1
        if self.ok and self._checked < last:
            self.ok = _values_then_comma(buf, bounds[self._checked], bounds[last])
            self._checked = last


def _values_then_comma(buf: bytearray, start: int, stop: int) -> bool:
    """Whether ``buf[start:stop]`` is JSON values, each followed by a ``,``:
    one decode of them as an array (a copy of the region; ~0.1 ms/MB)."""
    end = stop - 1
    while end > start and buf[end] in _WS:
        end -= 1
    if buf[end] != 0x2C:  # ","
        return False
    try:
        _VALUE.decode(b"[" + buf[start:end] + b"]")
    except msgspec.DecodeError:
        return False
    return True


def split_segmented(raw: bytearray, seg: Segmenter) -> SplitBody:
    """``raw`` split at its top level, its middle elements already checked
    by ``seg``: only the rest (the bytes before the first element checked,
    one placeholder element, the bytes from the last one on) is decoded now.
    The value that held the elements keeps them as a view of ``raw``.

    Sound: each removed piece is one valid JSON value and a ``,``; the
    placeholder is one too, after the same structural ``,`` (an array
    position, see :data:`ELEMENT`), so the body is valid exactly when the
    small document is. Anything unexpected: :func:`split` of the whole."""
    bounds = seg.bounds
    if not seg.ok or len(bounds) < 3:
        return split(raw)
    first, last = bounds[0], bounds[-1]
    token = b"sluice-cut-" + os.urandom(12).hex().encode()
    cut = b'{"role":"' + token + b'"},'
    small_doc = bytes(raw[:first]) + cut + bytes(raw[last:])
    try:
        return _split(small_doc, len(raw), cut, memoryview(raw)[first:last])
    except InvalidRequest:
        return split(raw)  # the error as the whole body gives it
