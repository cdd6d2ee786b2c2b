"""Reading a JSON request body safely: size, budget, content type, UTF-8, shape.

Small bodies (under :data:`SPLIT_BYTES`) are decoded whole (``orjson``);
larger ones are split at their top level (:mod:`gateway.split_body`) so the
bulk is never turned into Python objects on the event loop.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
from aiohttp import web

from ..body_budget import BODY_BUDGET
from ..config import ServerSettings
from ..errors import InvalidRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from ..split_body import Segmenter, split, split_segmented, whole

# curl -d sends application/x-www-form-urlencoded; accepting it keeps the
# README's one-line curl example working. Anything else that is not JSON is 415.
_ACCEPTED = {"application/json", "application/x-www-form-urlencoded", "text/plain", ""}

SPLIT_BYTES: Final = 256 << 10
"""Bodies at least this long are split, not decoded whole (under it a whole
decode costs under ~0.5 ms and keeps every field validated)."""
SEGMENT_BYTES: Final = 2 << 20
"""Bodies of a known length at least this long have their messages checked
as they arrive (:class:`~gateway.split_body.Segmenter`): the split at the
end then decodes only the rest (a 32 MB decode held the loop ~11 ms)."""


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes")


@asynccontextmanager
async def request_body(
    request: web.Request, server: ServerSettings
) -> AsyncIterator[dict[str, Any]]:
    """The request body as a JSON object, read under ``server``'s limits and
    held in the body budget (:mod:`gateway.body_budget`) until the block exits.

    The one body path of every JSON route. The object is a plain ``dict``,
    or a :class:`~gateway.split_body.SplitBody` for bodies of
    :data:`SPLIT_BYTES` or more. Raises :class:`PayloadTooLarge` (413) over
    ``server.max_body_bytes``, :class:`UnsupportedMediaType` (415) for a
    non-JSON content type, :class:`InvalidRequest` (400) for invalid UTF-8
    or JSON (RFC 8259; orjson also rejects nesting deeper than 1024) or a
    body that is not an object, :class:`RequestTimeout` (408) for a body
    that takes longer than ``server.body_timeout_s`` seconds to arrive, and
    :class:`~gateway.errors.BodyBudgetExhausted` (503) when the budget stays
    full.
    """
    max_bytes = server.max_body_bytes
    ctype = request.content_type
    if ctype not in _ACCEPTED and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {ctype!r}")
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"Request body is {length} bytes; the limit is {max_bytes}")
    async with request.app[BODY_BUDGET].lease(length or 0) as lease:
        raw, seg = await _read(request, server, lease.grow)
        if not raw:
            raise InvalidRequest("Request body is empty; expected a JSON object")
        yield split_segmented(raw, seg) if seg is not None else _decode(raw)


async def read_json_object(request: web.Request, server: ServerSettings) -> dict[str, Any]:
    """The body as :func:`request_body` gives it, its budget given back at once
    (for routes whose body is small or not kept)."""
    async with request_body(request, server) as body:
        return whole(body)


async def _read(
    request: web.Request, server: ServerSettings, grow: Any
) -> tuple[bytearray, Segmenter | None]:
    """Every byte of the body, chunk by chunk as it arrives (the budget grown
    to cover it; UTF-8 checked per chunk for bodies that will be split)."""
    max_bytes, timeout_s = server.max_body_bytes, server.body_timeout_s
    length = request.content_length
    # A known length: one buffer of that size, filled in place (no regrowth).
    buf = bytearray(length or 0)
    view = memoryview(buf)
    at = 0
    seg = Segmenter(buf) if length is not None and length >= SEGMENT_BYTES else None
    utf8 = codecs.getincrementaldecoder("utf-8")()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                size = at + len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                if length is None:
                    await grow(size)
                    view.release()
                    buf += chunk
                    view = memoryview(buf)
                else:
                    view[at:size] = chunk
                at = size
                if seg is not None:
                    seg.feed(at)
                if length is None or length >= SPLIT_BYTES:
                    utf8.decode(chunk)
            utf8.decode(b"", final=True)
    except TimeoutError:
        raise RequestTimeout(f"Request body not received within {timeout_s:g} s") from None
    except UnicodeDecodeError:
        raise InvalidRequest("Request body is not valid UTF-8") from None
    finally:
        view.release()
    if at != len(buf):
        raise InvalidRequest(f"Request body ended after {at} of {len(buf)} bytes")
    return buf, seg


def _decode(raw: bytearray) -> dict[str, Any]:
    if len(raw) >= SPLIT_BYTES:
        return split(raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidRequest(f"Request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    return body
