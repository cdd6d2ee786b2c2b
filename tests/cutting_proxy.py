"""A TCP proxy that cuts a connection mid-stream, for resumption tests
(``sluice.js`` under Node and in Chromium)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to ``127.0.0.1:port`` that cuts one
    connection (both sockets aborted: a reset, no clean end) after
    ``cut_after`` bytes toward the client; every other byte passes whole.

    Which connection: the first one, or, with ``when``, the first whose
    client sends bytes containing ``when`` (e.g. ``b"POST /v1/chat/completions"``),
    counting the bytes toward the client from that request on, so a browser's
    keep-alive connection that served the page first is cut in the stream.
    ``connections`` counts the connections accepted, ``cuts`` the cuts made,
    ``bytes_down`` the bytes relayed toward the client (a ``cut_after`` larger
    than any stream makes it a counting proxy).
    """

    def __init__(self, port: int, cut_after: int, when: bytes | None = None) -> None:
        self.target_port = port
        self.cut_after = cut_after
        self.when = when
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0
        self._armed = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free port; returns it."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        # Bytes this connection may still carry toward the client (None: any).
        budget: list[int | None] = [None]
        if self.when is None and not self._armed:
            self._armed = True
            budget[0] = self.cut_after

        async def upward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    if self.when is not None and not self._armed and self.when in data:
                        self._armed = True
                        budget[0] = self.cut_after
                    up_writer.write(data)
                    await up_writer.drain()
            abort()

        async def downward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    left = budget[0]
                    if left is not None and len(data) >= left:
                        writer.write(data[:left])
                        await writer.drain()
                        self.cuts += 1
                        break
                    if left is not None:
                        budget[0] = left - len(data)
                    self.bytes_down += len(data)
                    writer.write(data)
                    await writer.drain()
            abort()

        def abort() -> None:
            for w in (writer, up_writer):
                w.transport.abort()

        await asyncio.gather(upward(), downward())

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
