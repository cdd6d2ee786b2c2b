"""A raw-asyncio HTTP/1.1 SSE client that timestamps every event on arrival.

Why not aiohttp's client here: the load generator must parse tens of thousands
of events per second on a core it shares with the gateway and the mock, and
it must control the socket (``SO_RCVBUF``) and the read pace so that a slow
reader really backs bytes up into the kernel and the gateway. An
``asyncio.Protocol`` sees each ``data_received`` as it happens, so arrival
times are exact and cost no extra task switches.

Definitions (docs/architecture.md, "Words"): TTFT = request start -> first content event;
ITL = every gap between content events; TPOT = (last - first) / (tokens - 1);
E2E = request start -> last content event. Times are ``time.monotonic()``
(the event loop's clock), comparable with the mock's records.
"""

from __future__ import annotations

import asyncio
import socket
from array import array
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from loadtest.mock.frames import Dialect

PATHS: Final[dict[str, str]] = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@dataclass(slots=True)
class StreamResult:
    """One request as the client saw it. Times are monotonic seconds."""

    client_id: str
    profile: str
    dialect: str
    expected_tokens: int
    pace_s: float
    start: float
    status: int = 0
    headers_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    tokens: int = 0
    gaps: array[float] = field(default_factory=lambda: array("d"))
    done: bool = False
    error: str | None = None
    disconnected_at: float | None = None
    bytes: int = 0
    end: float | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.start

    @property
    def e2e(self) -> float | None:
        return None if self.last_token_at is None else self.last_token_at - self.start

    @property
    def tpot(self) -> float | None:
        if self.tokens < 2 or self.first_token_at is None or self.last_token_at is None:
            return None
        return (self.last_token_at - self.first_token_at) / (self.tokens - 1)


def build_request(
    dialect: Dialect,
    host: str,
    port: int,
    model: str,
    prompt: str,
    max_tokens: int,
    headers: dict[str, str] | None = None,
    body_extra: dict[str, Any] | None = None,
) -> bytes:
    """A complete streaming POST for ``dialect``, with ``Connection: close``;
    ``body_extra``: more request fields (e.g. ``temperature``)."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **(body_extra or {}),
    }
    extra = {"Authorization": "Bearer loadtest"}
    if dialect == "openai":
        body["stream_options"] = {"include_usage": True}
    else:
        extra = {"x-api-key": "loadtest", "anthropic-version": "2023-06-01"}
    payload = orjson.dumps(body)
    extra.update(headers or {})
    lines = [
        f"POST {PATHS[dialect]} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class TokenCounter:
    """Tokens seen by all parsers sharing it (live progress)."""

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens = 0


class SseParser:
    """Incremental HTTP response + chunked body + SSE parser feeding a StreamResult."""

    __slots__ = (
        "_body",
        "_chunk_left",
        "_chunked",
        "_head",
        "_in_body",
        "_raw",
        "_sse",
        "counter",
        "dialect",
        "on_token",
        "res",
    )

    def __init__(self, res: StreamResult, dialect: str) -> None:
        self.res = res
        self.dialect = dialect
        self._head = b""
        self._in_body = False
        self._chunked = False
        self._chunk_left = -1  # -1: expecting a size line
        self._body = b""
        self._raw = b""
        self._sse = b""
        self.on_token: Any = None  # optional callback(tokens_so_far)
        self.counter: TokenCounter | None = None

    def feed(self, data: bytes, now: float) -> None:
        self.res.bytes += len(data)
        if not self._in_body:
            self._head += data
            idx = self._head.find(b"\r\n\r\n")
            if idx < 0:
                return
            self._parse_head(self._head[:idx], now)
            data, self._head = self._head[idx + 4 :], b""
            self._in_body = True
        if self._chunked:
            data = self._dechunk(data)
        if self.res.status != 200:
            self._body += data
            return
        if data:
            self._feed_sse(data, now)

    def finish(self) -> None:
        """Called at EOF: classify an HTTP error body."""
        if self.res.status not in (0, 200) and self.res.error is None:
            self.res.error = f"http_{self.res.status}"

    def _parse_head(self, head: bytes, now: float) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.res.status = int(parts[1]) if len(parts) > 1 else 0
        self.res.headers_at = now
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True

    def _dechunk(self, data: bytes) -> bytes:
        # _chunk_left: > 0 bytes of chunk data to come; -1 expecting a size line;
        # -3 expecting the CRLF after a chunk; -2 terminal chunk seen.
        buf = self._raw + data if self._raw else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n:
            left = self._chunk_left
            if left > 0:
                take = min(left, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left = left - take or -3
            elif left == -3:
                if n - pos < 2:
                    break
                pos += 2
                self._chunk_left = -1
            elif left == -1:
                idx = buf.find(b"\r\n", pos)
                if idx < 0:
                    break
                size = int(buf[pos:idx].split(b";", 1)[0].strip() or b"0", 16)
                pos = idx + 2
                self._chunk_left = size if size else -2
            else:
                pos = n
        self._raw = buf[pos:]
        return b"".join(out)

    def _feed_sse(self, data: bytes, now: float) -> None:
        buf = self._sse + data if self._sse else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        pos = 0
        while (idx := buf.find(b"\n\n", pos)) >= 0:
            self._event(buf[pos:idx], now)
            pos = idx + 2
        self._sse = buf[pos:]

    def _event(self, raw: bytes, now: float) -> None:
        name = b""
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" ") if len(line) > 5 else b"")
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if not data:
            return
        payload = b"\n".join(data)
        res = self.res
        if payload == b"[DONE]":
            res.done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            res.error = res.error or "bad_json"
            return
        if not isinstance(obj, dict):
            return
        kind = name.decode() if name else str(obj.get("type", ""))
        if "error" in obj or kind == "error":
            err = obj.get("error")
            res.error = (
                str(err.get("type") or err.get("code")) if isinstance(err, dict) else "error"
            )
            return
        if self.dialect == "openai" or kind == "":
            choices = obj.get("choices")
            if choices and (choices[0].get("delta") or {}).get("content"):
                self._token(now)
        elif kind == "content_block_delta":
            if (obj.get("delta") or {}).get("text"):
                self._token(now)
        elif kind == "message_stop":
            res.done = True

    def _token(self, now: float) -> None:
        res = self.res
        if res.first_token_at is None:
            res.first_token_at = now
        else:
            res.gaps.append(now - res.last_token_at)  # type: ignore[operator]
        res.last_token_at = now
        res.tokens += 1
        if self.counter is not None:
            self.counter.tokens += 1
        if self.on_token is not None:
            self.on_token(res.tokens)


class _Proto(asyncio.Protocol):
    def __init__(self, parser: SseParser, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = parser
        self.request = request
        self.loop = loop
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data, self.loop.time())

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if (
            exc is not None
            and self.parser.res.error is None
            and self.parser.res.disconnected_at is None
        ):
            self.parser.res.error = type(exc).__name__
        if not self.closed.done():
            self.closed.set_result(None)


def make_socket(host: str, rcvbuf: int | None) -> socket.socket:
    """A non-blocking TCP socket; ``rcvbuf`` is set before connect so it bounds the window."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return sock


async def open_stream(
    host: str, port: int, request: bytes, parser: SseParser
) -> tuple[asyncio.Transport, asyncio.Future[None]]:
    """Connect, send ``request``; return the transport and a future set at close."""
    loop = asyncio.get_running_loop()
    proto = _Proto(parser, request, loop)
    transport, _ = await loop.create_connection(lambda: proto, host, port)
    assert isinstance(transport, asyncio.Transport)
    return transport, proto.closed


def mark_stream_end(parser: SseParser, now: float) -> None:
    """Finish a result: EOF classification, end time, truncated-stream error."""
    parser.finish()
    res = parser.res
    res.end = now
    if res.disconnected_at is None and not res.done and res.error is None:
        res.error = "truncated" if res.status == 200 else f"http_{res.status or 0}"
