"""A raw-socket HTTP/1.1 client for SSE: full control over reading speed.

The socket's ``SO_RCVBUF`` and the StreamReader's limit are set small, so a
client that stops reading really stops the bytes: nothing library-side keeps
draining the socket on its behalf.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson


class RawSSEClient:
    """One request; read the chunked SSE body as slowly as the test likes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self._text = b""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str,
        body: dict[str, Any],
        *,
        rcvbuf: int = 4096,
        headers: dict[str, str] | None = None,
    ) -> RawSSEClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        payload = orjson.dumps(body)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        client = cls(reader, writer)
        try:
            await client._read_head()
        except BaseException:
            writer.close()
            raise
        return client

    async def _read_head(self) -> None:
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed before the response")
        self.status = int(status_line.split()[1])
        while True:
            line = (await self.reader.readline()).decode().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    async def read_chunk(self) -> bytes | None:
        """One HTTP chunk of the body; None at the terminating chunk."""
        size_line = await self.reader.readline()
        if not size_line:
            raise ConnectionError("connection closed mid-body")
        size = int(size_line.strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2] if size else None

    async def events(self, limit: int | None = None) -> list[bytes]:
        """Read until the body ends (or ``limit`` events); the SSE events' bytes."""
        out: list[bytes] = []
        while limit is None or len(out) < limit:
            if b"\n\n" in self._text:
                event, _, self._text = self._text.partition(b"\n\n")
                out.append(event)
                continue
            data = await self.read_chunk()
            if data is None:
                break
            self._text += data
        return out

    def close(self) -> None:
        self.writer.close()


async def exchange(host: str, port: int, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``data`` as is on a fresh connection (no HTTP framing added: any
    bytes, malformed ones included); everything the server answers until it
    closes (or ``timeout_s``)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                out += chunk
        return out
    finally:
        writer.close()
