"""One stream, one owner: upstream chunks -> downstream SSE events.

A :class:`Stream` owns everything one streaming request holds: its upstream,
its :class:`~gateway.sse.SSEResponse`, its timer and its outcome. It runs in
the request's own task, and it alone writes to the response. Its life:

1. **Open** the upstream (:func:`gateway.attempts.open_first`: retries and
   fallbacks, each attempt bounded by ``ttft_timeout_s``) in a child task,
   while this task waits for it, sending heartbeats if it takes long.
2. **Commit late**: the SSE headers go out with the first chunk (or the
   first heartbeat), so an upstream failure before it is a proper HTTP error.
3. **Relay**: encode a chunk in the client's dialect, write it, *drain* (the
   backpressure: the next chunk is pulled only after the client's socket
   took this one), wait for the next chunk, again.
4. **End** with one :class:`~gateway.outcome.Outcome` (reason, error,
   timings, usage, bytes, waits) that the recorder and the summary log line
   both read. The upstream is closed first, synchronously, on every path.

Timeouts and signals, each raising its own error where it happens:

- ``heartbeat_interval_s`` of silence while waiting on the upstream: a
  ``: ping`` comment, written by this task, then the wait goes on;
- ``idle_timeout_s`` of upstream silence mid-stream: :class:`UpstreamStalled`;
- ``deadline_s`` for the whole stream: :class:`DeadlineExceeded`;
- shutdown after the grace period: :class:`ShuttingDown`;
- ``send_timeout_s`` for a client that takes nothing: ``slow_client``;
- the client leaving: aiohttp cancels this task (``handler_cancellation``),
  or the next write fails: ``client_disconnected``.

One ``call_later`` timer per stream serves heartbeat, idle and deadline; it
is re-armed only when it fires, so no timer is touched per chunk. It
interrupts the wait through :class:`~gateway.interrupts.Interrupter`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from .admission import Admission
from .attempts import OpenUpstream, Target, open_first
from .dialects.frames import Frame, StreamEncoder
from .downstream import Downstream
from .errors import (
    DeadlineExceeded,
    GatewayError,
    InternalError,
    ShuttingDown,
    StreamCancelled,
    UpstreamProtocolError,
    UpstreamStalled,
)
from .interrupts import Interrupt, Interrupter
from .outcome import Outcome
from .providers.base import UpstreamChunk
from .recorder import Recorder
from .sse import SlowClientError
from .store.base import StoredStatus
from .termination import Termination
from .timing import StreamClock

log = structlog.get_logger("gateway.stream")

_MALFORMED = (AttributeError, TypeError, KeyError, ValueError, IndexError)
"""What a dialect encoder raises on an upstream value of the wrong shape."""

_STATUS = {
    Termination.COMPLETED: StoredStatus.COMPLETED,
    Termination.CLIENT_DISCONNECTED: StoredStatus.CANCELLED,
    Termination.CANCELLED: StoredStatus.CANCELLED,
}
"""A stored stream's status for how it ended (everything else: ``failed``)."""

BATCH_BYTES = 32 << 10
"""At most about this many bytes of events that already arrived go out in
one socket write (:meth:`Stream._batch`)."""


def _encoded(encode: Callable[[UpstreamChunk], Frame], chunk: UpstreamChunk) -> tuple[bytes, bool]:
    """``encode(chunk)``'s bytes and content flag; an upstream value of the wrong
    shape is an :class:`UpstreamProtocolError`."""
    try:
        data, content, _ = encode(chunk)
    except _MALFORMED as exc:
        raise UpstreamProtocolError(
            "The upstream sent an event the gateway cannot read",
            detail=f"{type(exc).__name__}: {exc}; event {chunk.data[:200]!r}",
        ) from None
    return data, content


ERROR_EVENT_TIMEOUT_S = 5.0
"""How long the final error event may wait for the client before we drop it."""


class Stream:
    """One streaming request; :meth:`run` serves it (see the module docstring)."""

    def __init__(
        self,
        downstream: Downstream,
        targets: tuple[Target, ...],
        clock: StreamClock,
        recorder: Recorder,
        admission: Admission,
    ) -> None:
        primary = targets[0].settings
        self._targets = targets
        self._clock = clock
        self._recorder = recorder
        self._admission = admission
        self._sse = downstream
        self._interrupter = Interrupter()  # bound to the task that runs it
        self._cancelling: Callable[[], int] = lambda: 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline_at = clock.arrival + primary.deadline_s
        self._heartbeat_s = primary.heartbeat_interval_s
        self._idle_s = primary.idle_timeout_s
        self._waiting = False
        """True while this task waits on the upstream (open or next chunk)."""
        self._wait_from = float("inf")
        """When the current wait for a chunk began (inf: idle not checked)."""
        self._opened: OpenUpstream | None = None
        self._open_waiter: asyncio.Future[None] | None = None
        """What :meth:`_open` waits on while the opening runs."""
        self._queued = 0
        self._waits = 0
        self._wait_s = 0.0
        self.outcome: Outcome | None = None
        """Set once the stream has ended (also when :meth:`run` raised)."""

    def stop(self, why: Interrupt) -> None:
        """End the stream from outside (shutdown): its wait is interrupted."""
        self._interrupter.interrupt(why)

    # -- the life of a stream ------------------------------------------------

    async def run(self) -> web.StreamResponse | None:
        """Serve the stream; returns the finished response (None for a
        downstream with no HTTP response); :attr:`outcome` is set.

        Raises ``GatewayError`` only before the response is committed (the
        caller renders it as an HTTP error; the outcome is still recorded),
        and re-raises ``asyncio.CancelledError`` (the client left).
        """
        task = asyncio.current_task()
        assert task is not None, "a Stream runs inside a task"
        self._interrupter.bind(task)
        self._cancelling = task.cancelling
        sse = self._sse
        self._recorder.started()
        now = time.perf_counter()
        self._arm(min(self._deadline_at, now + min(self._heartbeat_s, self._idle_s)) - now)
        try:
            reason, error = await self._serve()
            if error is not None:
                if not sse.prepared:
                    raise error
                await self._send_error(error)
            elif reason is Termination.SLOW_CLIENT:
                sse.abort()
            # The terminating chunk goes out after the bookkeeping, so a client
            # that saw the end of the stream also sees it in /metrics.
            await sse.finish()
        finally:
            # Every path, a cancellation at any await included: the upstream
            # closed and the outcome recorded (once), the socket's settings
            # back, and last, a stored copy ended after the event that ends it.
            outcome = self.outcome or self._end(
                Termination.CLIENT_DISCONNECTED, None, time.perf_counter()
            )
            sse.release()
            sse.ended(_STATUS.get(outcome.reason, StoredStatus.FAILED))
        return sse.response

    async def _serve(self) -> tuple[Termination, GatewayError | None]:
        """Open and relay; returns how the stream ended (the outcome is
        recorded). Re-raises ``asyncio.CancelledError`` (the client left)."""
        error: GatewayError | None = None
        gone_at: float | None = None
        try:
            try:
                opened = self._opened = await self._open()
                await self._relay(opened)
                reason = Termination.COMPLETED
            except asyncio.CancelledError:
                why = self._interrupter.take()
                if why is None:
                    raise
                raise _error_for(why) from None
        except GatewayError as err:
            error, reason = err, err.reason
        except SlowClientError:
            reason = Termination.SLOW_CLIENT
        except ConnectionError:
            gone_at, reason = time.perf_counter(), Termination.CLIENT_DISCONNECTED
        except asyncio.CancelledError:
            self._end(Termination.CLIENT_DISCONNECTED, None, time.perf_counter())
            raise
        except Exception as exc:
            # A bug (ours or a provider's): logged whole, and the stream still
            # ends as every other does, with an error event or a 500.
            log.exception("stream_failed", error=repr(exc))
            error = InternalError(
                "The gateway failed while serving this stream",
                detail=f"{type(exc).__name__}: {exc}",
            )
            reason = error.reason
        self._end(reason, error, gone_at)
        return reason, error

    async def _open(self) -> OpenUpstream:
        """The first target whose upstream yields a chunk; heartbeats meanwhile.

        The opening runs in a child task (it is not cancel-safe, and this
        task's waits are interrupted for heartbeats) that wakes this one as
        its last step (:meth:`_opening`): one loop iteration from the first
        chunk to this task, where ``asyncio.wait`` takes two (a done
        callback, then the wake-up), each a full iteration of a loaded loop."""
        task = self._loop.create_task(self._opening())
        try:
            while True:
                self._waiting = True
                waiter = self._open_waiter = self._loop.create_future()
                try:
                    if not task.done():
                        await waiter
                    return task.result()
                except asyncio.CancelledError:
                    if not self._heartbeat_due():
                        raise
                finally:
                    self._waiting = False
                    self._open_waiter = None
                await self._sse.ping()
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_discard_open)

    async def _opening(self) -> OpenUpstream:
        """:func:`~gateway.attempts.open_first`, in the child task of :meth:`_open`,
        waking :meth:`_open`'s current wait as it ends (however it ends)."""
        try:
            return await open_first(self._targets, self._clock, self._recorder)
        finally:
            waiter = self._open_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _relay(self, opened: OpenUpstream) -> None:
        sse, clock, recorder = self._sse, self._clock, self._recorder
        encoder = opened.target.encoder
        encode, send, upstream = encoder.encode, sse.send, opened.upstream
        # Chunks that already arrived go out in one write (see _batch); only
        # toward a plain socket (a store keeps one entry per event).
        next_nowait: Callable[[], UpstreamChunk | None] | None = getattr(
            upstream, "next_nowait", None
        )
        send_many: Callable[[list[bytes]], Awaitable[float]] | None = getattr(
            sse, "send_many", None
        )
        if send_many is None:
            next_nowait = None
        self._idle_s = opened.target.settings.idle_timeout_s
        await sse.prepare()
        chunk: UpstreamChunk | None = opened.first
        while chunk is not None:
            data, content = _encoded(encode, chunk)
            if content and clock.first_received is None:
                clock.content_received()
            more = next_nowait() if next_nowait is not None else None
            if more is not None:
                assert next_nowait is not None and send_many is not None
                await self._batch(encode, next_nowait, send_many, data, int(content), more)
            elif data:
                waited = await send(data)
                self._sent(waited)
                if content:
                    gap = clock.content_written(sse.last_write)
                    if gap is not None:
                        recorder.itl(gap)
            # Wait for the next chunk (inline: no coroutine per event). A
            # heartbeat interrupt pings, and the wait goes on.
            self._wait_from = time.perf_counter()
            self._waiting = True
            while True:
                try:
                    chunk = await upstream.next()
                    break
                except asyncio.CancelledError:
                    if not self._heartbeat_due():
                        raise
                self._waiting = False
                await sse.ping()
                self._waiting = True
            self._waiting = False
        end = encoder.finish()
        if end:
            self._sent(await send(end))

    async def _batch(
        self,
        encode: Callable[[UpstreamChunk], Frame],
        next_nowait: Callable[[], UpstreamChunk | None],
        send_many: Callable[[list[bytes]], Awaitable[float]],
        data: bytes,
        contents: int,
        more: UpstreamChunk | None,
    ) -> None:
        """Write ``data`` and the chunks that already arrived behind it (from
        ``more`` on) as one socket write of at most :data:`BATCH_BYTES` (plus
        one event), then drain once. The upstream delivered them in one read,
        so they are in memory already: the backpressure is unchanged (nothing
        more is read from the upstream before the client took them), and a
        client that is behind gets one write instead of one per event.
        Content events are counted one by one (the ones after the first of
        a write have an ITL of 0: the client gets them at once). An event
        that cannot be encoded ends the batch: the ones before it are
        written, then its ``GatewayError`` is raised (unreadable, or a
        translation's output over its bound)."""
        datas = [data] if data else []
        size = len(data)
        failure: GatewayError | None = None
        while more is not None:
            try:
                more_data, content = _encoded(encode, more)
            except GatewayError as err:
                failure = err  # raised once the events before it went out
                break
            if more_data:
                datas.append(more_data)
                size += len(more_data)
            contents += content
            if size >= BATCH_BYTES:
                break
            more = next_nowait()
        if contents and self._clock.first_received is None:
            self._clock.content_received()
        if datas:
            self._sent(await send_many(datas), len(datas))
            clock, recorder, written = self._clock, self._recorder, self._sse.last_write
            for _ in range(contents):
                gap = clock.content_written(written)
                if gap is not None:
                    recorder.itl(gap)
        if failure is not None:
            raise failure

    def _sent(self, waited: float, events: int = 1) -> None:
        """After one write of ``events`` events: account its drain wait and the
        bytes still queued (sampled once per event, as the metric says).

        Also re-raises a cancellation that a library under the downstream
        swallowed (seen: redis-py, when the client left during a store write):
        the task still counts it (``cancelling()``), or our interrupt is
        still pending."""
        if self._interrupter.pending is not None or self._cancelling():
            raise asyncio.CancelledError
        queued = self._sse.queued_bytes()
        delta = queued - self._queued
        if delta:
            self._queued = queued
            self._admission.queued_bytes += delta
        if waited > 0.0:
            self._waits += 1
            self._wait_s += waited
        self._recorder.event(queued, delta, waited)
        for _ in range(events - 1):
            self._recorder.event(queued, 0, 0.0)

    def _end(
        self, reason: Termination, error: GatewayError | None, gone_at: float | None
    ) -> Outcome:
        """Close the upstream (first, synchronously), stop the timer, record;
        returns the outcome (also :attr:`outcome`)."""
        self._interrupter.disarm()
        opened = self._opened
        if opened is not None:
            if reason is Termination.COMPLETED:
                opened.upstream.release()
            else:
                opened.upstream.close()
        end = time.perf_counter()
        if self._timer is not None:
            self._timer.cancel()
        if self._queued:
            self._admission.queued_bytes -= self._queued
            self._recorder.unqueue(self._queued)
            self._queued = 0
        clock, sse = self._clock, self._sse
        # The upstream's usage, any count it did not send estimated (usage.estimated).
        usage = opened.target.encoder.usage() if opened is not None else None
        target = opened.target if opened is not None else self._targets[0]
        outcome = Outcome(
            reason=reason,
            error=error,
            model=target.model,
            provider=target.provider.kind,
            clock=clock,
            committed=sse.prepared,
            end=end,
            usage=usage,
            output_tokens=(
                usage.output_tokens
                if usage is not None and usage.output_tokens is not None
                else clock.content_events
            ),
            events=sse.events_sent,
            bytes=sse.bytes_sent,
            max_queued_bytes=sse.max_queued,
            backpressure_waits=self._waits,
            backpressure_wait_s=self._wait_s,
            heartbeats=sse.pings,
            upstream_cancel_s=(
                end - gone_at if gone_at is not None and opened is not None else None
            ),
        )
        self.outcome = outcome
        self._recorder.finished(outcome)
        return outcome

    async def _send_error(self, err: GatewayError) -> None:
        """The error event in the client's dialect; a client that does not
        take it within :data:`ERROR_EVENT_TIMEOUT_S` is dropped."""
        encoder = self._encoder()
        try:
            async with asyncio.timeout(ERROR_EVENT_TIMEOUT_S):
                await self._sse.send_last(encoder.error(err))
        except (ConnectionError, SlowClientError, TimeoutError, GatewayError):
            self._sse.abort()

    def _encoder(self) -> StreamEncoder:
        # Before any target served a chunk, the primary stands for them all:
        # its encoder speaks the client's dialect as well as any other would.
        opened = self._opened
        return (opened.target if opened is not None else self._targets[0]).encoder

    # -- the timer -------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._timer = self._loop.call_later(max(0.0, delay), self._on_timer)

    def _on_timer(self) -> None:
        """Fires at the earliest due time it knew of; re-checks against the
        stream's current state and interrupts, or re-arms for later."""
        now = time.perf_counter()
        if now >= self._deadline_at:
            self._interrupter.interrupt(Interrupt.DEADLINE)
            return
        due = self._deadline_at
        if self._waiting:
            idle_at = self._wait_from + self._idle_s
            if now >= idle_at:
                self._interrupter.interrupt(Interrupt.IDLE)
                return
            ping_at = self._sse.last_write + self._heartbeat_s
            if now >= ping_at:
                self._interrupter.interrupt(Interrupt.HEARTBEAT)
                ping_at = now + self._heartbeat_s
            # now + idle_s: a wait for the first chunk may turn into a wait
            # for the next one before the timer fires again.
            due = min(due, idle_at, ping_at, now + self._idle_s)
        else:
            # Writing (a drain may wait, bounded by send_timeout_s): look
            # again later; idle and heartbeat count only while waiting.
            due = min(due, now + min(self._heartbeat_s, self._idle_s))
        self._arm(due - now)

    def _heartbeat_due(self) -> bool:
        """In an ``except CancelledError``: True if this was the heartbeat
        interrupt (the wait goes on after a ping)."""
        if self._interrupter.pending is not Interrupt.HEARTBEAT:
            return False
        return self._interrupter.take() is Interrupt.HEARTBEAT


def _error_for(why: Interrupt) -> GatewayError:
    """The error an interrupt ends the stream with. (A heartbeat interrupt only
    ever lands in a wait, where it is taken and the wait goes on.)"""
    if why is Interrupt.IDLE:
        return UpstreamStalled("The upstream provider went silent in the middle of the stream")
    if why is Interrupt.DEADLINE:
        return DeadlineExceeded("The stream exceeded its deadline")
    if why is Interrupt.SHUTDOWN:
        return ShuttingDown("The gateway is shutting down")
    if why is Interrupt.CANCEL:
        return StreamCancelled("The response was cancelled")
    return GatewayError("The stream was interrupted", detail=f"interrupt {why.value}")


def _discard_open(task: asyncio.Task[OpenUpstream]) -> None:
    """A cancelled opening that finished anyway: close what it opened."""
    if task.cancelled():
        return
    if task.exception() is None:
        task.result().upstream.close()
