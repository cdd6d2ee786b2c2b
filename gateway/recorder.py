"""StreamRecorder: one stream's metrics, with label children resolved once.

The relay calls :meth:`event` after every SSE event and :meth:`itl` after every
content event; both touch only pre-resolved children, so the per-event cost
is a histogram observe or two (measured in the metrics benchmark).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .admission import Admission
from .dialects.frames import Usage
from .metrics import Metrics
from .timing import StreamClock


class StreamRecorder:
    """Records one stream into :class:`~gateway.metrics.Metrics` (or nowhere if None)."""

    __slots__ = (
        "_admission",
        "_bp_wait_s",
        "_bp_waits",
        "_buffer",
        "_cancel",
        "_itl",
        "_last_queued",
        "_metrics",
        "_model",
        "_provider",
        "_route",
        "_started",
        "_total_buffer",
        "backpressure_wait_s",
        "backpressure_waits",
    )

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        model: str,
        provider: str,
        route: str,
        admission: Admission | None = None,
    ) -> None:
        self._metrics = metrics
        self._admission = admission
        self._model, self._provider, self._route = model, provider, route
        self._last_queued = 0
        self._started = False
        self.backpressure_waits = 0
        self.backpressure_wait_s = 0.0
        if metrics is None:
            return
        self._itl: Histogram = metrics.itl.labels(model, provider)
        self._buffer: Histogram = metrics.connection_write_buffer.labels(route)
        self._bp_waits: Counter = metrics.backpressure_waits.labels(route)
        self._bp_wait_s: Histogram = metrics.backpressure_wait_seconds.labels(route)
        self._total_buffer: Gauge = metrics.write_buffer

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return self._provider

    def relabel(self, model: str, provider: str) -> None:
        """A fallback serves the stream: record under its model and provider."""
        self._model, self._provider = model, provider
        if self._metrics is not None:
            self._itl = self._metrics.itl.labels(model, provider)

    def retry(self, provider: str, reason: str) -> None:
        """A retry (``reason`` = the error code) or ``fallback`` before the first token."""
        if self._metrics is not None:
            self._metrics.upstream_retries.labels(provider, reason).inc()

    def started(self) -> None:
        """The stream is open (counted in ``streams_active`` until :meth:`finished`)."""
        self._started = True
        if self._metrics is not None:
            self._metrics.streams_active.labels(self._route).inc()

    def event(self, queued_bytes: int, waited_s: float) -> None:
        """After one SSE event: bytes still queued toward the client, drain wait."""
        if waited_s > 0.0:
            self.backpressure_waits += 1
            self.backpressure_wait_s += waited_s
        delta = queued_bytes - self._last_queued
        if delta:
            self._last_queued = queued_bytes
            if self._admission is not None:
                self._admission.queued_bytes += delta
        if self._metrics is None:
            return
        self._buffer.observe(queued_bytes)
        if delta:
            self._total_buffer.inc(delta)
        if waited_s > 0.0:
            self._bp_waits.inc()
            self._bp_wait_s.observe(waited_s)

    def itl(self, gap_s: float) -> None:
        if self._metrics is not None:
            self._itl.observe(gap_s)

    def upstream_cancelled(self, seconds: float) -> None:
        """Client gone -> upstream connection closed took ``seconds``."""
        if self._metrics is not None:
            self._metrics.upstream_cancel.labels(self._provider).observe(seconds)

    def finished(
        self, reason: str, clock: StreamClock, output_tokens: int, usage: Usage | None, *,
        committed: bool, end: float,
    ) -> None:  # fmt: skip
        """Record the stream's end: timings, tokens, termination reason."""
        m = self._metrics
        last_queued, self._last_queued = self._last_queued, 0
        if last_queued and self._admission is not None:
            self._admission.queued_bytes -= last_queued
        if m is None:
            return
        labels = (self._model, self._provider)
        if last_queued:
            self._total_buffer.dec(last_queued)
        if self._started:
            m.streams_active.labels(self._route).dec()
        m.terminations.labels(*labels, reason).inc()
        if clock.ttft is not None:
            m.ttft.labels(*labels).observe(clock.ttft)
        if clock.upstream_ttft is not None:
            m.upstream_ttft.labels(*labels).observe(clock.upstream_ttft)
        tpot = clock.tpot(output_tokens)
        if tpot is not None:
            m.tpot.labels(*labels).observe(tpot)
        if committed:
            m.stream_duration.labels(*labels).observe(end - clock.arrival)
        self.tokens(output_tokens, usage.input_tokens if usage is not None else None)

    def tokens(self, output_tokens: int | None, input_tokens: int | None) -> None:
        """Count a request's tokens under the model and provider that served it."""
        m = self._metrics
        if m is None:
            return
        if output_tokens:
            m.output_tokens.labels(self._model, self._provider).inc(output_tokens)
        if input_tokens:
            m.input_tokens.labels(self._model, self._provider).inc(input_tokens)
