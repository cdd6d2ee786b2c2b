"""Reading a JSON request body safely: size, content type, UTF-8, shape."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from ..config import ServerSettings
from ..errors import InvalidRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

# curl -d sends application/x-www-form-urlencoded; accepting it keeps the
# README's one-line curl example working. Anything else that is not JSON is 415.
_ACCEPTED = {"application/json", "application/x-www-form-urlencoded", "text/plain", ""}


async def read_json_object(request: web.Request, server: ServerSettings) -> dict[str, Any]:
    """The request body as a JSON object, read under ``server``'s limits.

    The one body path of every JSON route. Raises :class:`PayloadTooLarge`
    (413) over ``server.max_body_bytes``,
    :class:`UnsupportedMediaType` (415) for a non-JSON content type, and
    :class:`InvalidRequest` (400) for invalid UTF-8 or JSON (RFC 8259; orjson
    also rejects nesting deeper than 1024) or a body that is not an object,
    and :class:`RequestTimeout` (408) for a body that takes longer than
    ``server.body_timeout_s`` seconds to arrive.
    """
    max_bytes, timeout_s = server.max_body_bytes, server.body_timeout_s
    ctype = request.content_type
    if ctype not in _ACCEPTED and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {ctype!r}")
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"Request body is {length} bytes; the limit is {max_bytes}")
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"Request body not received within {timeout_s:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes")
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidRequest(f"Request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    return body
