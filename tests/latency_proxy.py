"""A TCP proxy that delays every chunk both ways, for tests that need a slow
dependency (Redis answering in twice ``delay_s``) on a real socket."""

from __future__ import annotations

import asyncio
import contextlib


class LatencyProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``127.0.0.1:port``;
    bytes each way wait ``delay_s`` first (0 passes them at once)."""

    def __init__(self, port: int, delay_s: float = 0.0) -> None:
        self.target_port = port
        self.delay_s = delay_s
        self.server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        loop = asyncio.get_running_loop()
        for task in (
            loop.create_task(self._pipe(reader, up_writer)),
            loop.create_task(self._pipe(up_reader, writer)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
