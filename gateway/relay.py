"""The relay: upstream chunks -> downstream SSE events, with backpressure.

One loop serves every route and dialect. Its rules:

- **Backpressure.** The next upstream chunk is pulled only after the client's
  socket took the previous event (:meth:`SSEStream.send` drains), so a slow
  client pauses the upstream iterator; nothing between the two is a queue.
- **Commit late.** The HTTP status is held until the first upstream chunk
  arrives, so an upstream failure before it is still a proper HTTP error.
  After that, failures become an error event in the client's dialect; a
  failure is never disguised as a clean end of stream.
- **Always close the upstream** (``finally``), so a client that leaves, a slow
  client that is dropped, or an error closes the upstream connection at once.
  With ``handler_cancellation`` aiohttp cancels the handler the moment the
  client disconnects, also while we wait for the first token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from aiohttp import web

from .config import StreamSettings
from .dialects.frames import StreamEncoder, Usage
from .errors import GatewayError, UpstreamProtocolError
from .providers.base import Provider, UpstreamChunk
from .recorder import StreamRecorder
from .sse import SlowClientError, SSEStream
from .timing import StreamClock

log = structlog.get_logger("gateway.relay")


class Termination(StrEnum):
    """Why a stream ended; the ``reason`` label of ``sluice_stream_terminations_total``."""

    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_STALLED = "upstream_stalled"
    SLOW_CLIENT = "slow_client"
    DEADLINE = "deadline"
    SHUTDOWN = "shutdown"


_REASONS = {t.value: t for t in Termination}


@dataclass(frozen=True, slots=True)
class StreamJob:
    """Everything one streaming request needs."""

    request: web.Request
    provider: Provider
    body: dict[str, Any]
    encoder: StreamEncoder
    settings: StreamSettings
    recorder: StreamRecorder
    clock: StreamClock
    model: str


async def _next(iterator: AsyncIterator[UpstreamChunk]) -> UpstreamChunk | None:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


async def relay(job: StreamJob) -> web.StreamResponse:
    """Stream one upstream response to the client.

    Returns the (finished) SSE response. Raises ``GatewayError`` only before
    the response is committed (the caller renders it as an HTTP error), and
    re-raises ``asyncio.CancelledError``.
    """
    clock, recorder, encoder = job.clock, job.recorder, job.encoder
    sse = SSEStream(
        job.request,
        buffer_bytes=job.settings.downstream_buffer_bytes,
        send_timeout_s=job.settings.send_timeout_s,
    )
    reason = Termination.UPSTREAM_ERROR
    error: GatewayError | None = None
    usage: Usage | None = None
    gone_at: float | None = None
    upstream = None
    iterator: AsyncIterator[UpstreamChunk] | None = None
    recorder.started()
    try:
        clock.mark_upstream_sent()
        upstream = await job.provider.open_stream(job.body)
        iterator = aiter(upstream)
        chunk = await _next(iterator)
        if chunk is None:
            raise UpstreamProtocolError("upstream stream ended before its first event")
        await sse.prepare()
        perf_counter, send, queued = time.perf_counter, sse.send, sse.queued_bytes
        while chunk is not None:
            frame = encoder.encode(chunk)
            if frame.content:
                clock.content_received(perf_counter())
            if frame.usage is not None:
                usage = frame.usage
            if frame.data:
                waited = await send(frame.data)
                recorder.event(queued(), waited)
                if frame.content:
                    gap = clock.content_written(perf_counter())
                    if gap is not None:
                        recorder.itl(gap)
            chunk = await _next(iterator)
        waited = await send(encoder.finish())
        recorder.event(queued(), waited)
        await sse.finish()
        reason = Termination.COMPLETED
    except GatewayError as err:
        error = err
        reason = _REASONS.get(err.reason, reason)
        if not sse.prepared:
            raise
        try:
            await sse.send(encoder.error(err))
            await sse.finish()
        except (ConnectionError, SlowClientError):
            pass
    except SlowClientError:
        reason = Termination.SLOW_CLIENT
        sse.abort()
    except ConnectionError:
        gone_at = time.perf_counter()
        reason = Termination.CLIENT_DISCONNECTED
    except asyncio.CancelledError:
        gone_at = time.perf_counter()
        reason = Termination.CLIENT_DISCONNECTED
        raise
    finally:
        await _close_upstream(iterator, upstream)
        end = time.perf_counter()
        if gone_at is not None and upstream is not None:
            recorder.upstream_cancelled(end - gone_at)
        output_tokens = (
            usage.output_tokens
            if usage is not None and usage.output_tokens is not None
            else clock.content_events
        )
        recorder.finished(reason, clock, output_tokens, usage, committed=sse.prepared, end=end)
        _log_summary(job, reason, error, sse, clock, output_tokens, usage)
    return sse.response


async def _close_upstream(iterator: AsyncIterator[UpstreamChunk] | None, upstream: Any) -> None:
    if upstream is not None:
        await upstream.aclose()
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        # The generator may re-raise the error that ended it; it is closed either way.
        with contextlib.suppress(Exception):
            await aclose()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _log_summary(
    job: StreamJob,
    reason: Termination,
    error: GatewayError | None,
    sse: SSEStream,
    clock: StreamClock,
    output_tokens: int,
    usage: Usage | None,
) -> None:
    itl = clock.itl_percentiles()
    log.info(
        "stream_end",
        model=job.model,
        provider=job.provider.kind,
        outcome=str(reason),
        error_type=error.type if error else None,
        error=error.message if error else None,
        ttft_ms=_ms(clock.ttft),
        upstream_ttft_ms=_ms(clock.upstream_ttft),
        e2e_ms=_ms(clock.e2e),
        itl_p50_ms=_ms(itl[0]) if itl else None,
        itl_p95_ms=_ms(itl[1]) if itl else None,
        itl_p99_ms=_ms(itl[2]) if itl else None,
        output_tokens=output_tokens,
        input_tokens=usage.input_tokens if usage else None,
        events=sse.events_sent,
        bytes=sse.bytes_sent,
        max_buffered_bytes=sse.max_queued,
        backpressure_waits=job.recorder.backpressure_waits,
        backpressure_wait_ms=_ms(job.recorder.backpressure_wait_s),
    )
