"""Client behaviours: how one simulated client reads (or abandons) a stream.

- ``normal``: reads everything as it arrives (an ``asyncio.Protocol``).
- ``slow``: a small ``SO_RCVBUF`` (set before connect, so it bounds the TCP
  window) and an ``asyncio.StreamReader`` with a small limit, reading
  ``read_chunk`` bytes then sleeping to average ``read_bytes_per_s``: bytes
  really back up into the kernel and the gateway.
- ``stalled``: connects, sends the request, never reads; holds the connection
  until the phase ends.
- ``disconnect_mid``: closes the connection after k content events.
- ``disconnect_ttft``: closes the connection while waiting for the first token.

Every behaviour is bounded in time by ``stop_at`` plus the stream's own
expected duration.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Final, Literal

from loadtest.client.sse import (
    SseParser,
    StreamResult,
    TokenCounter,
    build_request,
    make_socket,
    mark_stream_end,
    open_stream,
)
from loadtest.mock.frames import Dialect
from loadtest.mock.scenario import MockScenario

ProfileKind = Literal["normal", "slow", "stalled", "disconnect_mid", "disconnect_ttft"]
_GRACE_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Profile:
    """A client behaviour and its share of the load (``weight``).

    ``scenario`` overrides the phase's mock scenario for this profile (a
    first-token disconnect needs a long TTFT; a stalled client a long stream).
    """

    name: str
    kind: ProfileKind
    weight: float = 1.0
    read_bytes_per_s: float = 4096.0
    read_chunk: int = 512
    rcvbuf: int = 4096
    disconnect_after_tokens: tuple[int, int] = (3, 20)
    disconnect_after_s: float = 0.2
    scenario: MockScenario | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: the mock directly, the gateway, or the baseline relay."""

    name: str
    host: str
    port: int
    model: str
    dialect: Dialect = "openai"


def expected_duration(sc: MockScenario) -> float:
    return (sc.ttft_ms + sc.tokens * sc.itl_ms) / 1000.0


async def run_client(
    target: Target,
    profile: Profile,
    scenario: MockScenario,
    client_id: str,
    rng: random.Random,
    stop_at: float,
    counter: TokenCounter | None = None,
) -> StreamResult:
    """Run one request with ``profile``; never raises for network errors."""
    loop = asyncio.get_running_loop()
    sc = profile.scenario or scenario
    prompt = f"Write a story. [lt-id:{client_id}] {sc.full_directive()}"
    req = build_request(target.dialect, target.host, target.port, target.model, prompt, sc.tokens)
    res = StreamResult(
        client_id, profile.name, target.dialect, sc.tokens, sc.itl_ms / 1000.0, loop.time()
    )
    parser = SseParser(res, target.dialect)
    parser.counter = counter
    limit_s = max(stop_at - loop.time(), 0.0) + expected_duration(sc) + _GRACE_S
    try:
        if profile.kind in ("slow", "stalled"):
            await _run_slow(target, profile, req, parser, stop_at, limit_s)
        else:
            await _run_fast(target, profile, req, parser, rng, limit_s)
    except (OSError, TimeoutError) as exc:
        res.error = res.error or type(exc).__name__
    mark_stream_end(parser, loop.time())
    return res


async def _run_fast(
    target: Target,
    profile: Profile,
    req: bytes,
    parser: SseParser,
    rng: random.Random,
    limit_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    res = parser.res
    holder: list[asyncio.Transport] = []

    def drop() -> None:
        if res.disconnected_at is None and holder:
            res.disconnected_at = loop.time()
            holder[0].close()

    if profile.kind == "disconnect_mid":
        lo, hi = profile.disconnect_after_tokens
        top = max(1, min(hi, parser.res.expected_tokens - 1))  # leave before the end
        k = rng.randint(min(lo, top), top)
        parser.on_token = lambda n: drop() if n >= k else None
    transport, closed = await open_stream(target.host, target.port, req, parser)
    holder.append(transport)
    try:
        if profile.kind == "disconnect_ttft":
            await asyncio.wait({closed}, timeout=profile.disconnect_after_s)
            if res.first_token_at is None:
                drop()
        async with asyncio.timeout(limit_s):
            await closed
    finally:
        transport.close()


async def _run_slow(
    target: Target,
    profile: Profile,
    req: bytes,
    parser: SseParser,
    stop_at: float,
    limit_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    res = parser.res
    sock = make_socket(target.host, profile.rcvbuf)
    try:
        await loop.sock_connect(sock, (target.host, target.port))
    except OSError:
        sock.close()
        raise
    # A small reader limit (bytes) keeps the client's own buffer small (it pauses
    # reading at 2x limit); the response head of a stalled client must still fit.
    reader_limit = profile.read_chunk if profile.kind == "slow" else 4096
    reader, writer = await asyncio.open_connection(sock=sock, limit=reader_limit)
    try:
        writer.write(req)
        await writer.drain()
        if profile.kind == "stalled":
            # Read the response head only (a rejection must not pass for an open
            # stream), then never read again: hold the connection until the phase ends.
            try:
                async with asyncio.timeout(max(stop_at - loop.time(), 0.0) + _GRACE_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                head = exc.partial
            except asyncio.LimitOverrunError:
                head = b""
            parser.feed(head, loop.time())
            if res.status != 200:
                res.error = f"http_{res.status}" if res.status else "no_response"
                return
            await asyncio.sleep(max(stop_at - loop.time(), 0.0))
            res.disconnected_at = loop.time()
            return
        pause = profile.read_chunk / profile.read_bytes_per_s
        # ``limit_s`` bounds the whole read, a read blocked on a silent server too.
        async with asyncio.timeout(limit_s):
            while True:
                data = await reader.read(profile.read_chunk)
                if not data:
                    break
                parser.feed(data, loop.time())
                if loop.time() >= stop_at + _GRACE_S:
                    res.disconnected_at = loop.time()
                    break
                await asyncio.sleep(pause)
    finally:
        writer.close()
