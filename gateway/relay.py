"""The relay: upstream chunks -> downstream SSE events, with backpressure.

One loop serves every route and dialect. Its rules:

- **Backpressure.** The next upstream chunk is pulled only after the client's
  socket took the previous event (:meth:`SSEStream.send` drains), so a slow
  client pauses the upstream iterator; nothing between the two is a queue.
- **Commit late.** The HTTP status is held until the first upstream chunk, so
  an upstream failure before it is still a proper HTTP error and may be
  retried (:mod:`gateway.attempts`); if the upstream stays silent for
  ``heartbeat_interval_s`` the headers go out with ``: ping`` heartbeats
  (:mod:`gateway.heartbeat`). Once committed, failures become an error event
  in the client's dialect; a failure is never disguised as a clean end.
- **Timeouts.** ``ttft_timeout_s`` to the first chunk, ``idle_timeout_s``
  between chunks, ``deadline_s`` for the whole stream, ``send_timeout_s`` for
  a client that takes nothing. One ``asyncio.Timeout`` per stream is
  rescheduled per chunk; graceful shutdown fires it early through the
  :class:`~gateway.admission.StreamHandle`.
- **Always close the upstream** (``finally``): a client that leaves, a slow
  client that is dropped, a timeout or an error closes it at once. With
  ``handler_cancellation`` aiohttp cancels the handler the moment the client
  disconnects, also while we wait for the first token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from aiohttp import web

from .admission import StreamHandle
from .attempts import OpenUpstream, Target, open_first
from .dialects.frames import StreamEncoder, Usage
from .errors import DeadlineExceeded, GatewayError, ShuttingDown, UpstreamStalled
from .heartbeat import Heartbeat
from .recorder import StreamRecorder
from .sse import SlowClientError, SSEStream
from .termination import Termination
from .timing import StreamClock

log = structlog.get_logger("gateway.relay")


@dataclass(frozen=True, slots=True)
class StreamJob:
    """Everything one streaming request needs. ``targets[0]`` is the primary."""

    request: web.Request
    targets: tuple[Target, ...]
    recorder: StreamRecorder
    clock: StreamClock
    handle: StreamHandle


def _timeout_error(handle: StreamHandle, deadline_at: float, idle_s: float) -> GatewayError:
    if handle.stop_reason == "shutdown":
        return ShuttingDown("The gateway is shutting down")
    if asyncio.get_running_loop().time() >= deadline_at - 0.001:
        return DeadlineExceeded("The stream exceeded its deadline")
    return UpstreamStalled(f"Upstream sent nothing for {idle_s} s mid-stream")


async def relay(job: StreamJob) -> web.StreamResponse:
    """Stream one request to the client.

    Returns the (finished) SSE response. Raises ``GatewayError`` only before
    the response is committed (the caller renders it as an HTTP error), and
    re-raises ``asyncio.CancelledError``.
    """
    clock, recorder, handle = job.clock, job.recorder, job.handle
    primary = job.targets[0].settings
    sse = SSEStream(
        job.request,
        buffer_bytes=primary.downstream_buffer_bytes,
        send_timeout_s=primary.send_timeout_s,
    )
    loop = asyncio.get_running_loop()
    deadline_at = loop.time() + primary.deadline_s - (time.perf_counter() - clock.arrival)
    heartbeat = Heartbeat(sse, handle, primary.heartbeat_interval_s)
    reason = Termination.UPSTREAM_ERROR
    error: GatewayError | None = None
    usage: Usage | None = None
    gone_at: float | None = None
    opened: OpenUpstream | None = None
    recorder.started()
    heartbeat.start()
    try:
        async with asyncio.timeout_at(deadline_at) as deadline:
            handle.timeout = deadline
            if handle.stop_reason is not None:
                deadline.reschedule(loop.time())
            heartbeat.waiting = True
            opened = await open_first(job.targets, clock, recorder)
            heartbeat.waiting = False
        target = opened.target
        encoder, iterator, chunk = target.encoder, opened.iterator, opened.first
        idle_s = target.settings.idle_timeout_s
        await sse.prepare()
        send, queued = sse.send, sse.queued_bytes
        async with asyncio.timeout_at(deadline_at) as timer:
            handle.timeout = timer
            if handle.stop_reason is not None:
                timer.reschedule(loop.time())
            while True:
                frame = encoder.encode(chunk)
                if frame.content:
                    clock.content_received()
                if frame.usage is not None:
                    usage = frame.usage
                if frame.data:
                    waited = await send(frame.data)
                    recorder.event(queued(), waited)
                    if frame.content:
                        # send() stamped last_write once the client took it.
                        gap = clock.content_written(sse.last_write)
                        if gap is not None:
                            recorder.itl(gap)
                # Silence from the upstream is bounded by idle_s; a slow
                # client by send_timeout_s (inside send), not by idle_s.
                timer.reschedule(min(loop.time() + idle_s, deadline_at))
                heartbeat.waiting = True
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                heartbeat.waiting = False
                timer.reschedule(deadline_at)
            heartbeat.waiting = False
            timer.reschedule(deadline_at)
            waited = await send(encoder.finish())
            recorder.event(queued(), waited)
        reason = Termination.COMPLETED
    except TimeoutError:
        error = _timeout_error(handle, deadline_at, _target(job, opened).settings.idle_timeout_s)
        reason = error.reason
        if handle.stop_reason == "client_disconnected":
            reason, gone_at = Termination.CLIENT_DISCONNECTED, time.perf_counter()
        elif not sse.prepared:
            raise error from None
        else:
            await _send_error(sse, error, _target(job, opened).encoder)
    except GatewayError as err:
        error = err
        reason = err.reason
        if not sse.prepared:
            raise
        await _send_error(sse, err, _target(job, opened).encoder)
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
        handle.timeout = None

        async def cleanup() -> None:
            await heartbeat.stop()
            if opened is not None:
                await opened.aclose()
            end = time.perf_counter()
            if gone_at is not None and opened is not None:
                recorder.upstream_cancelled(end - gone_at)
            output_tokens = (
                usage.output_tokens
                if usage is not None and usage.output_tokens is not None
                else clock.content_events
            )
            recorder.finished(reason, clock, output_tokens, usage, committed=sse.prepared, end=end)
            _log_summary(job, reason, error, sse, clock, output_tokens, usage, heartbeat.pings)

        # Shielded: aiohttp cancels the handler when the client's connection
        # drops, which may happen while we close the upstream; the upstream
        # must still close and the stream must still be recorded.
        await asyncio.shield(loop.create_task(cleanup()))
    # The terminating chunk goes out after the bookkeeping, so a client that
    # saw the end of the stream also sees it in /metrics.
    await sse.finish()
    return sse.response


def _target(job: StreamJob, opened: OpenUpstream | None) -> Target:
    # Before any target served a chunk, the primary stands for them all: its
    # encoder speaks the client's dialect as well as any other would.
    return opened.target if opened is not None else job.targets[0]


async def _send_error(sse: SSEStream, err: GatewayError, encoder: StreamEncoder) -> None:
    """The error event in the client's dialect (the caller ends the response)."""
    try:
        async with asyncio.timeout(5.0):
            await sse.send(encoder.error(err))
    except (ConnectionError, SlowClientError, TimeoutError):
        sse.abort()


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
    pings: int,
) -> None:
    itl = clock.itl_percentiles()
    log.info(
        "stream_end",
        model=job.recorder.model,
        provider=job.recorder.provider,
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
        heartbeats=pings,
    )
