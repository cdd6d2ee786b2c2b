"""Upstream HTTP on aiohttp directly: sessions, requests, errors, SSE bodies.

Why not the SDKs: request setup through ``openai`` -> ``httpx2`` -> the SDK's
aiohttp transport costs ~1.3 ms of CPU per request, and the layers add work
per chunk (docs/architecture.md, "Facts the design rests on"). Here a request
is one ``orjson.dumps`` and one ``ClientSession.post``; the body is read with
:class:`~gateway.providers.sse_decoder.SSEDecoder`.

- **Sessions** (:class:`UpstreamSessions`): one ``aiohttp.ClientSession`` per
  upstream origin and receive bound. Upstream sockets get ``SO_RCVBUF``
  (``upstream_buffer_bytes``): otherwise Linux autotunes the receive queue (up
  to ``net.ipv4.tcp_rmem`` max, often 6-32 MiB) and a stalled client lets the
  upstream run megabytes ahead into our kernel buffer, where backpressure
  cannot see it. aiohttp pauses reading once about twice ``READ_BUFSIZE`` is
  buffered.
- **Trust**: only the configured origin is ever sent a request (and its
  key): redirects are never followed (a 3xx is :class:`UpstreamRedirected`),
  proxy variables and ``.netrc`` are ignored (``trust_env=False``), and no
  cookie an upstream sets is kept or sent back (``DummyCookieJar``).
- **Bounds**: every body is read in bytes it may not exceed: an SSE event
  (:class:`SSEDecoder`), a non-streaming body (``max_response_bytes``,
  :func:`read_json`), an error body (:data:`ERROR_BODY_LIMIT`). Requests ask
  for ``Accept-Encoding: identity`` (bodies are relayed byte for byte and
  never decompressed, so a compressed answer is a protocol error).
- **Errors** are mapped by exception type and HTTP status
  (:func:`error_for_exception`, :func:`error_for_response`): what the client
  is told is one short sentence; the upstream's address, the exception class
  and the upstream's body go to :attr:`GatewayError.detail`, for the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog
from yarl import URL

from ..errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamRedirected,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
)
from ..otel.hooks import upstream_headers
from ..split_body import Encoded
from .base import UpstreamChunk
from .dns import StaleWhileRevalidate
from .sse_decoder import SSEDecoder, SSEEvent
from .status import error_for_status

log = structlog.get_logger("gateway.providers.http")

READ_BUFSIZE = 16384
"""aiohttp's read buffer for upstream bodies (it pauses the socket at ~2x)."""
ERROR_BODY_LIMIT = 65536
"""At most this much of an upstream's error body is read (for its message)."""
ERROR_BODY_TIMEOUT_S = 5.0
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
"""Sent on every upstream request: bodies are never decompressed (aiohttp
would otherwise advertise ``gzip, deflate``)."""
LARGE_BODY_BYTES = 1 << 20
"""Request bodies over this are sent from a BytesIO, piece by piece."""
RELEASE_WAIT_S = 5.0
"""How long a completed stream's connection may take to end its body."""


class UpstreamSessions:
    """The aiohttp sessions toward upstreams, shared by every provider.

    Keyed by ``(origin, rcvbuf_bytes, connect_timeout_s)``; closed by
    :meth:`aclose` when the app stops.
    """

    def __init__(self, resolver: StaleWhileRevalidate | None = None) -> None:
        self._sessions: dict[tuple[str, int, float], aiohttp.ClientSession] = {}
        self.resolver = resolver if resolver is not None else StaleWhileRevalidate()
        """Every session's DNS: a known host never waits (:mod:`gateway.providers.dns`)."""

    def get(self, url: str, rcvbuf_bytes: int, connect_timeout_s: float) -> aiohttp.ClientSession:
        """The session for ``url``'s origin (created on first use)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        key = (origin, rcvbuf_bytes, connect_timeout_s)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                keepalive_timeout=30.0,
                socket_factory=_socket_factory(rcvbuf_bytes),
                resolver=self.resolver,
                use_dns_cache=False,  # the resolver is the cache
            )
            # No total or read timeout here: the stream's own TTFT, idle and
            # deadline timers bound every wait; connect is bounded here.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=connect_timeout_s, sock_connect=connect_timeout_s
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                read_bufsize=READ_BUFSIZE,
                auto_decompress=False,
                headers=REQUEST_HEADERS,
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            self._sessions[key] = session
            if parts.hostname is not None and not _is_ip(parts.hostname):
                port = parts.port or (443 if parts.scheme == "https" else 80)
                self.resolver.warm(parts.hostname, port)
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        await self.resolver.close()


def shutdown_now(transport: asyncio.BaseTransport | None) -> None:
    """Shut the transport's TCP socket down both ways at once (the peer gets
    the FIN now); the transport still closes it (never raises).

    ``transport.close()`` closes the socket in a callback of the next loop
    iteration (asyncio and uvloop alike), so the upstream keeps generating
    for as long as the loop lags: measured with ``python -m loadtest cancel_trace``,
    that wait was p99 91 ms of a 91 ms "disconnect -> upstream closed" on a
    loaded machine. uvloop's transport sockets refuse ``shutdown()``, so it
    is called on a socket object borrowed from the descriptor (and detached,
    leaving the descriptor to the transport)."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        borrowed = socket.socket(fileno=sock.fileno())
        try:
            borrowed.shutdown(socket.SHUT_RDWR)
        finally:
            borrowed.detach()


def _is_ip(host: str) -> bool:
    """Whether ``host`` (a URL's, without brackets) is an IP literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _socket_factory(rcvbuf: int) -> aiohttp.connector.SocketFactoryType:
    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    return make


def _unsent(exc: aiohttp.ClientError) -> bool:
    """Whether ``exc`` says the request body could not be written: the pooled
    connection it was given was already closing (its peer closed it as it was
    handed out: the keep-alive race). The upstream never received a whole
    request, so sending it again on a new connection cannot repeat work.
    Raised by aiohttp's ``ClientRequest.write_bytes`` as a ``ClientOSError``
    (not a ``ClientConnectorError``: that is a failed connect)."""
    return (
        isinstance(exc, aiohttp.ClientOSError)
        and not isinstance(exc, aiohttp.ClientConnectorError)
        and (exc.strerror or "").startswith("Can not write request body")
    )


async def post(
    session: aiohttp.ClientSession,
    url: str | URL,
    body: Mapping[str, Any] | bytes | Encoded,
    headers: Mapping[str, str],
    errors: Callable[[aiohttp.ClientResponse], Awaitable[GatewayError]] | None = None,
) -> aiohttp.ClientResponse:
    """POST ``body`` as JSON (``bytes`` or :class:`Encoded`: already encoded); returns the
    response once its headers arrived with a 2xx status and an identity body. Raises the mapped
    ``GatewayError`` otherwise (the response is then closed): a redirect is
    :class:`UpstreamRedirected` (never followed), a ``Content-Encoding``
    other than identity :class:`UpstreamProtocolError`, any other non-2xx
    what ``errors`` makes of it (default :func:`error_for_response`; a
    provider whose error bodies have their own shape passes its own). A
    ``URL`` built with ``encoded=True`` is sent as is (a signed request's).
    A body that could not be written at all (:func:`_unsent`) is sent once
    more on a fresh connection before that counts as a failure."""
    data = (
        None
        if isinstance(body, Encoded)
        else (body if isinstance(body, bytes) else orjson.dumps(body))
    )
    sent_headers = upstream_headers(headers)
    if isinstance(body, Encoded):
        sent_headers = {**sent_headers, "Content-Length": str(body.size)}
    for attempt in range(2):
        payload: Any
        if isinstance(body, Encoded):  # a split body: its pieces, never joined
            payload = body.stream()
        else:
            assert data is not None
            # Over 1 MiB, written in 256 KiB pieces with the loop let run between
            # them (aiohttp's BytesIOPayload) rather than handed over at once.
            payload = io.BytesIO(data) if len(data) > LARGE_BODY_BYTES else data
        try:
            response = await session.post(
                url, data=payload, headers=sent_headers, allow_redirects=False
            )
            break
        except aiohttp.ClientError as exc:
            if attempt == 0 and _unsent(exc):
                # The upstream never had the request: once more, and say so
                # (a closing pooled connection should be rare; many are a bug).
                log.warning("upstream_body_resent", host=URL(url).host)
                continue
            raise error_for_exception(exc) from exc
    if response.status >= 300:
        try:
            if response.status < 400:
                raise UpstreamRedirected(
                    f"The upstream provider answered with a redirect (HTTP {response.status})",
                    detail=f"upstream {response.status} to "
                    f"{response.headers.get('Location', '')[:2000]!r} (not followed)",
                )
            raise await (errors or error_for_response)(response)
        finally:
            response.close()
    encoding = response.headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        response.close()
        raise UpstreamProtocolError(
            "The upstream sent a compressed response the gateway did not ask for",
            detail=f"Content-Encoding: {encoding[:200]!r}",
        )
    return response


async def read_json(response: aiohttp.ClientResponse, limit: int) -> dict[str, Any]:
    """A non-streaming response body of at most ``limit`` bytes as a JSON
    object (the response is released after a whole body, closed otherwise).

    Raises :class:`UpstreamResponseTooLarge` past ``limit`` (at once for a
    ``Content-Length`` over it; otherwise after reading ``limit`` bytes),
    :class:`UpstreamProtocolError` for a body that is not a JSON object, and
    the mapped error for a connection that breaks.
    """
    try:
        raw = await read_bounded(response, limit)
    except BaseException:
        response.close()
        raise
    response.release()
    payload = json_object(raw, "a response")
    try:
        # orjson reads 1024 levels of nesting but writes 255: what the gateway
        # relays (as is or translated) must encode, or it would be a 500 there.
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        raise UpstreamProtocolError(
            "The upstream sent a response nested deeper than the gateway relays",
            detail=repr(bytes(raw[:200])),
        ) from None
    return payload


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytearray:
    """The whole body of ``response``, read as it arrives (aiohttp's buffer,
    ``READ_BUFSIZE``, at a time) and never more than ``limit`` bytes of it.
    Raises :class:`UpstreamResponseTooLarge` past ``limit``, the mapped
    error for a connection that breaks. The caller closes the response."""
    length = response.content_length
    if length is not None and length > limit:
        raise UpstreamResponseTooLarge(
            "The upstream response is larger than the gateway accepts",
            detail=f"Content-Length {length} over max_response_bytes {limit}",
        )
    body = bytearray()  # grown in place: the peak is about the body, not twice it
    content = response.content
    try:
        while data := await content.readany():
            if len(body) + len(data) > limit:
                raise UpstreamResponseTooLarge(
                    "The upstream response is larger than the gateway accepts",
                    detail=f"body over max_response_bytes {limit}",
                )
            body += data
    except aiohttp.ClientError as exc:
        raise error_for_exception(exc) from exc
    return body


def json_object(data: bytes | bytearray, what: str = "an event") -> dict[str, Any]:
    """``data`` parsed as a JSON object. Raises UpstreamProtocolError otherwise
    (invalid JSON or UTF-8, or another JSON type)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(
            f"The upstream sent {what} that is not valid JSON", detail=repr(bytes(data[:200]))
        ) from None
    if not isinstance(payload, dict):
        raise UpstreamProtocolError(
            f"The upstream sent {what} that is not a JSON object", detail=repr(bytes(data[:200]))
        )
    return payload


def payload_type(payload: dict[str, Any]) -> str | None:
    """An unnamed event's ``type`` field, its name when it is a string (the
    passthroughs write it as an ``event:`` line); None otherwise. A type
    holding a line break would become lines of its own there: it raises
    :class:`UpstreamProtocolError`."""
    kind = payload.get("type")
    if not isinstance(kind, str):
        return None
    if "\n" in kind or "\r" in kind:
        raise UpstreamProtocolError(
            "The upstream sent an event type with a line break", detail=repr(kind[:200])
        )
    return kind


def error_for_exception(exc: BaseException) -> GatewayError:
    """An aiohttp (or OS) exception as a GatewayError, by type.

    Connect timeouts and refused or reset connections are
    :class:`UpstreamConnectError` (retryable before the first token); a body
    cut short (``ClientPayloadError``) is too, since the connection broke.
    """
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectError("Timed out connecting to the upstream provider", detail=detail)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return UpstreamTimeout("The upstream provider timed out", detail=detail)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError("Could not connect to the upstream provider", detail=detail)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectError(
            "The upstream connection broke in the middle of the response", detail=detail
        )
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return UpstreamConnectError("The upstream connection failed", detail=detail)
    if isinstance(exc, aiohttp.ClientResponseError):
        # Its str() holds the URL, query included (a model's ``query`` may hold a key).
        detail = f"{type(exc).__name__}: {exc.status}, message={exc.message!r}"
        return UpstreamProtocolError("The upstream sent an invalid HTTP response", detail=detail)
    return UpstreamConnectError("The upstream request failed", detail=detail)


async def error_for_response(response: aiohttp.ClientResponse) -> GatewayError:
    """The GatewayError for a non-2xx upstream response (reads up to
    :data:`ERROR_BODY_LIMIT` of its body for the provider's message)."""
    body = b""
    try:
        async with asyncio.timeout(ERROR_BODY_TIMEOUT_S):
            body = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, TimeoutError):
        pass
    message, kind = _error_message(body)
    return error_for_status(
        response.status,
        message,
        response.headers.get("Retry-After") or google_retry_delay(body),
        kind=kind,
        # Where it came from (the query left out: some upstreams take a key there).
        detail=f"upstream {response.status} from {response.method} "
        f"{response.url.with_query(None)}: {body[:2000]!r}",
    )


def google_retry_delay(body: bytes) -> str | None:
    """Seconds from a Google API error's ``google.rpc.RetryInfo`` detail
    (``{"error": {"details": [{"@type": ".../google.rpc.RetryInfo",
    "retryDelay": "26s"}]}}``: how Gemini says when to retry a 429,
    https://ai.google.dev/gemini-api/docs/rate-limits), as a ``Retry-After``
    value; None for any other body."""
    if b"RetryInfo" not in body:
        return None
    try:
        error = orjson.loads(body).get("error")
        for detail in error.get("details") or ():
            delay = detail.get("retryDelay")
            if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str):
                return delay.removesuffix("s")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return None


def _error_message(body: bytes) -> tuple[str | None, str | None]:
    """(message, type) from an OpenAI ``{"error": {...}}`` or Anthropic
    ``{"type": "error", "error": {...}}`` body, if it is one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message, kind = error.get("message"), error.get("type")
        return (
            message if isinstance(message, str) else None,
            kind if isinstance(kind, str) else None,
        )
    return None, None


class EventStream:
    """Chunks of one upstream SSE response; see :class:`~gateway.providers.base.UpstreamStream`.

    Subclasses implement :meth:`decode` for their dialect and set
    :attr:`finished` at the terminal marker (:attr:`terminal`); an EOF before
    it is a protocol error. :meth:`next` is cancel-safe: a cancelled call
    consumes nothing, so the stream core may interrupt a wait (heartbeat,
    timeout) and wait again.
    """

    __slots__ = ("_decoder", "_error", "_pending", "_response", "finished")

    terminal: ClassVar[str]
    """The terminal marker, for the truncation error's detail."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        ctype = response.headers.get("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            response.close()
            raise UpstreamProtocolError(
                "The upstream did not answer with an event stream",
                detail=f"Content-Type: {ctype!r}",
            )
        self._response = response
        self._decoder = SSEDecoder()
        self._pending: deque[UpstreamChunk] = deque()
        self._error: GatewayError | None = None
        self.finished = False

    def decode(self, event: SSEEvent) -> UpstreamChunk | None:
        """One upstream SSE event as a chunk, or None to skip it (``ping``,
        ``[DONE]``). Raises ``GatewayError`` for an error event or a malformed one."""
        raise NotImplementedError

    async def next(self) -> UpstreamChunk | None:
        """The next chunk; None after the terminal marker. Raises GatewayError
        (after every chunk that arrived before the failure)."""
        pending = self._pending
        while not pending:
            if self._error is not None:
                raise self._error
            if self.finished:
                return None
            try:
                data = await self._response.content.readany()
            except aiohttp.ClientError as exc:
                raise error_for_exception(exc) from exc
            if not data:
                raise UpstreamProtocolError(
                    "The upstream response ended before the stream was complete",
                    detail=f"EOF before {self.terminal}",
                )
            try:
                for event in self._decoder.feed(data):
                    chunk = self.decode(event)
                    if chunk is not None:
                        pending.append(chunk)
                    if self.finished:
                        break
            except GatewayError as err:
                # Chunks decoded before the failure still go out first.
                self._error = err
        return pending.popleft()

    def next_nowait(self) -> UpstreamChunk | None:
        """The next chunk if it already arrived (decoded from an earlier read),
        else None; never waits, never raises (a failure is :meth:`next`'s)."""
        pending = self._pending
        return pending.popleft() if pending else None

    def close(self) -> None:
        """Close the upstream connection now (synchronous, idempotent): the upstream
        sees the TCP connection close (docs/architecture.md, "Facts the design rests on").

        The FIN goes out before this returns (:func:`shutdown_now`): a transport
        closes its socket one loop iteration later, and under load that wait
        was the whole tail of "client disconnect -> upstream closed"."""
        response = self._response
        connection = response.connection
        if connection is not None:
            shutdown_now(connection.transport)
        response.close()

    def release(self) -> None:
        """The stream completed: keep the connection for the next request.

        aiohttp returns it to the pool by itself when the body's end (the
        chunked terminator, usually a few microseconds behind the terminal
        marker) arrives; an upstream that never ends its body after the
        terminal marker is closed after :data:`RELEASE_WAIT_S`.
        """
        response = self._response
        if not response.content.is_eof():
            asyncio.get_running_loop().call_later(RELEASE_WAIT_S, response.close)
