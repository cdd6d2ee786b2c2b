"""A TCP proxy that cuts a connection mid-stream, for resumption tests
(``sluice.js`` under Node and in Chromium)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to ``127.0.0.1:port`` that cuts the first
    connection after ``cut_after`` bytes toward the client (both sockets
    aborted: a reset, no clean end); later connections pass whole.
    ``connections`` counts the connections accepted."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target_port = port
        self.cut_after = cut_after
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free port; returns it."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: int | None
        ) -> None:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if cap is not None and sent + len(data) >= cap:
                        dst.write(data[: cap - sent])
                        await dst.drain()
                        break
                    sent += len(data)
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                w.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, limit))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
