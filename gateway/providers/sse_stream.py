"""The raw-SSE upstream stream both SDK-backed providers share.

An SDK's ``with_streaming_response`` gives an HTTP response; this reads it as
SSE with ``httpx2.EventSource`` (WHATWG HTML, "Server-sent events"), lets the
subclass turn each event into an :class:`~gateway.providers.base.UpstreamChunk`,
maps every SDK, httpx2 or aiohttp failure to a GatewayError by type, and
treats a stream cut before its terminal marker as a protocol error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import httpx2
import orjson

from ..errors import GatewayError, UpstreamProtocolError
from .base import UpstreamChunk


def json_object(data: str | bytes, what: str = "an event") -> dict[str, Any]:
    """``data`` parsed as a JSON object. Raises UpstreamProtocolError otherwise."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(
            f"upstream sent {what} that is not JSON: {data[:80]!r}"
        ) from None
    if not isinstance(payload, dict):
        raise UpstreamProtocolError(f"upstream sent {what} that is not a JSON object")
    return payload


class SDKEventStream:
    """Chunks of one upstream SSE response; subclasses implement :meth:`decode`.

    ``decode`` returns the chunk to yield (or None to skip the event) and sets
    :attr:`finished` when it sees the terminal marker; iteration then ends.
    """

    terminal: ClassVar[str]
    """The terminal marker's name, for the truncation error."""

    def __init__(self, response: Any, map_error: Callable[[BaseException], GatewayError]) -> None:
        self._response = response
        self._map_error = map_error
        self._closed = False
        self.finished = False

    def decode(self, sse: httpx2.ServerSentEvent) -> UpstreamChunk | None:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[UpstreamChunk]:
        decode = self.decode
        try:
            async for sse in httpx2.EventSource(self._response.http_response):
                chunk = decode(sse)
                if chunk is not None:
                    yield chunk
                if self.finished:
                    return
        except GatewayError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from exc
        raise UpstreamProtocolError(f"upstream stream ended before {self.terminal}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Closing a broken connection may raise; it is closed either way.
        with contextlib.suppress(Exception):
            await self._response.close()
