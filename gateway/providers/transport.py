"""The HTTP client under the SDKs: aiohttp, with a bounded upstream receive buffer.

Both SDKs sit on ``httpx2``; the aiohttp transport they ship is ~15% cheaper
than httpx2's own (DESIGN.md). We build it ourselves to set ``SO_RCVBUF`` on
upstream sockets: otherwise Linux autotunes the receive queue (up to
``net.ipv4.tcp_rmem`` max, often 6-32 MiB) and a stalled client lets the
upstream run megabytes ahead into our kernel buffer, where backpressure
cannot see it.
"""

from __future__ import annotations

import socket

import aiohttp
import httpx2
from aiohappyeyeballs import AddrInfoType

# The transport vendored by the openai SDK (the upstream project is
# httpx-aiohttp); it accepts a ClientSession factory, which is what we need.
from openai._vendor.httpx_aiohttp import AiohttpTransport

READ_BUFSIZE = 16384
"""aiohttp pauses reading an upstream socket once about twice this is buffered."""
TIMEOUT = httpx2.Timeout(connect=10.0, read=600.0, write=30.0, pool=10.0)
"""SDK-level backstops; the relay's ttft/idle/deadline timers are the real bounds."""


def sdk_timeout(connect_timeout_s: float) -> httpx2.Timeout:
    """:data:`TIMEOUT` with the configured ``connect_timeout_s``."""
    return httpx2.Timeout(connect=connect_timeout_s, read=600.0, write=30.0, pool=connect_timeout_s)


def _socket_factory(rcvbuf: int) -> aiohttp.connector.SocketFactoryType:
    def make(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    return make


def upstream_http_client(
    rcvbuf_bytes: int, timeout: httpx2.Timeout = TIMEOUT
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` on aiohttp whose sockets receive at most about
    ``rcvbuf_bytes`` ahead of the reader (Linux doubles the value for overhead)."""

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0, keepalive_timeout=30.0, socket_factory=_socket_factory(rcvbuf_bytes)
        )
        return aiohttp.ClientSession(connector=connector, read_bufsize=READ_BUFSIZE)

    return httpx2.AsyncClient(transport=AiohttpTransport(client=session), timeout=timeout)
