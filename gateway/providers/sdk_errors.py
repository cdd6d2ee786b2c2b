"""SDK and transport exceptions -> GatewayError, shared by the SDK-backed providers.

Both official SDKs (openai 3.x, anthropic 2.x) sit on ``httpx2`` with the
vendored aiohttp transport, so their failures look alike: a typed
``APIStatusError`` for an HTTP error, ``APITimeoutError`` /
``APIConnectionError`` for transport trouble, and (anthropic, DESIGN.md) a raw
``httpx2`` error that can escape the SDK mid-stream. Each provider supplies its
SDK's classes in an :class:`SDKErrors`; the mapping is by type, never by
message text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2

from ..errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)


@dataclass(frozen=True, slots=True)
class SDKErrors:
    """One SDK's exception classes and how its status errors map."""

    status: type[Exception]
    """``APIStatusError``: the upstream answered with an error."""
    timeout: type[Exception]
    """``APITimeoutError``."""
    connection: type[Exception]
    """``APIConnectionError`` (the base of ``APITimeoutError`` in both SDKs)."""
    from_status: Callable[[Any], GatewayError]
    """Maps an instance of ``status`` (status code, body, ``Retry-After``)."""


def transport_cause(exc: BaseException) -> BaseException | None:
    """The aiohttp or OS exception behind an SDK error, if any.

    The vendored aiohttp transport maps every ``ClientConnectionError`` (a
    refused connection included) to ``httpx2.ConnectTimeout``; the original
    exception on the cause chain says what really happened.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientError | OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def map_sdk_error(exc: BaseException, sdk: SDKErrors) -> GatewayError:
    """``exc`` (an SDK, httpx2 or aiohttp exception) as a GatewayError."""
    if isinstance(exc, GatewayError):
        return exc
    cause = transport_cause(exc)
    if cause is not None and not isinstance(
        cause, aiohttp.ServerTimeoutError | aiohttp.SocketTimeoutError | TimeoutError
    ):
        return UpstreamConnectError(f"upstream connection failed: {type(cause).__name__}: {cause}")
    if isinstance(exc, sdk.status):
        return sdk.from_status(exc)
    if isinstance(exc, (sdk.timeout, httpx2.TimeoutException)):
        return UpstreamTimeout(f"upstream timed out: {type(exc).__name__}")
    if isinstance(exc, httpx2.SSEError):
        return UpstreamProtocolError(f"upstream response is not an SSE stream: {exc}")
    if isinstance(exc, (sdk.connection, httpx2.TransportError, aiohttp.ClientError)):
        return UpstreamConnectError(f"upstream connection failed: {type(exc).__name__}: {exc}")
    return UpstreamError(f"upstream failed: {type(exc).__name__}")
