"""Fake upstreams for tests: real aiohttp servers on loopback with scripted SSE.

A :class:`FakeOpenAI` serves ``POST /v1/chat/completions``. Each request plays
the script the test set (:class:`Script`): chunks paced by delays, an HTTP
error, a mid-stream error, an abrupt close, or an endless fast stream. It
records what it got (request bodies) and what it got out: bytes whose write
(and drain) completed, and when it saw its connection close.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from loadtest.mock.frames import sse_event


def chunk(content: str | None = None, *, idx: int = 0, finish: str | None = None,
          **delta: Any) -> dict[str, Any]:  # fmt: skip
    """A chat.completion.chunk with one choice."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": idx, "delta": delta, "finish_reason": finish}],
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    """One ``data:`` event (JSON, or a string such as ``[DONE]`` as is): the
    load test's mock upstream's encoder, :func:`loadtest.mock.frames.sse_event`."""
    return sse_event(payload)


@dataclass
class Script:
    """What the fake does with the next request."""

    events: list[bytes] = field(default_factory=list)
    """Raw bytes written one after another (each with its own write + drain)."""
    ttft_s: float = 0.0
    itl_s: float = 0.0
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    then: str = "end"
    """After the events: ``end`` (write_eof), ``close`` (abort the socket),
    ``hang`` (sleep until cancelled), ``flood`` (endless fast chunks)."""
    sndbuf: int | None = None
    content_type: str = "text/event-stream"


@dataclass
class Record:
    body: dict[str, Any]
    bytes_out: int = 0
    closed_at: float | None = None
    completed: bool = False
    events_out: int = 0
    peer: Any = None
    """The gateway's end of the upstream connection (same peer: a reused connection)."""


class FakeOpenAI:
    """See the module docstring. ``script`` may be replaced between requests."""

    def __init__(self) -> None:
        self.script = Script(events=[sse(chunk("hi")), sse("[DONE]")])
        self.queue: list[Script] = []
        """Scripts for the next requests, in order; then ``script`` for the rest."""
        self.records: list[Record] = []
        self.base_url = ""
        self.app = web.Application(client_max_size=64 << 20)  # agent-sized bodies (issue 26)
        self.app.router.add_post("/v1/chat/completions", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = Record(body=await request.json())
        record.peer = request.transport.get_extra_info("peername") if request.transport else None
        self.records.append(record)
        script = self.queue.pop(0) if self.queue else self.script
        if script.status != 200:
            return web.json_response(
                script.error_body or {"error": {"message": "fake failure", "type": "server_error"}},
                status=script.status,
                headers=script.headers,
            )
        if not record.body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": record.body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                 "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }
            )  # fmt: skip
        return await self._play(request, record, script)

    async def _play(
        self, request: web.Request, record: Record, script: Script
    ) -> web.StreamResponse:
        """Play ``script``'s events (paced, each written and drained), then its
        ``then``; shared by every fake upstream built on this one."""
        transport = request.transport
        assert transport is not None
        if script.sndbuf is not None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, script.sndbuf)
            transport.set_write_buffer_limits(high=script.sndbuf)
        resp = web.StreamResponse(headers={"Content-Type": script.content_type})
        try:
            await resp.prepare(request)
            await asyncio.sleep(script.ttft_s)
            for i, data in enumerate(script.events):
                if i and script.itl_s:
                    await asyncio.sleep(script.itl_s)
                await self._write(request, resp, record, data)
            if script.then == "flood":
                n = 0
                while True:
                    n += 1
                    await self._write(request, resp, record, self._flood_event(n))
            if script.then == "hang":
                await asyncio.sleep(3600)
            if script.then == "close":
                transport.abort()
                return resp
            await resp.write_eof()
            record.completed = True
        except (ConnectionError, asyncio.CancelledError):
            record.closed_at = time.perf_counter()
            raise
        return resp

    def _flood_event(self, n: int) -> bytes:
        """The ``n``-th event of ``then = "flood"``, in this fake's wire format."""
        return sse(chunk(f"tok{n} " + "x" * 200))

    async def _write(
        self, request: web.Request, resp: web.StreamResponse, record: Record, data: bytes
    ) -> None:
        await resp.write(data)
        writer = request.writer
        await writer.drain()
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("fake upstream: connection closed")
        record.bytes_out += len(data)
        record.events_out += 1
