"""StreamRecorder: one stream's metrics, with label children resolved once.

Per event the stream calls :meth:`StreamRecorder.event` (bytes still queued
toward the client, the drain's wait) and, for content events,
:meth:`StreamRecorder.itl`; both touch only pre-resolved children. At the end
:meth:`StreamRecorder.finished` records the stream's :class:`~gateway.outcome.Outcome`.
:class:`NullRecorder` stands in when ``metrics_enabled = false``.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Histogram

from .metrics import Metrics
from .otel.hooks import stream_finished
from .outcome import Outcome

FLUSH_EVERY = 32
"""Per-event observations are added up locally and flushed into the histogram
every this many, and when the stream ends."""


class HistogramBatch:
    """Observations of one histogram child, added up locally.

    ``Histogram.observe`` walks the bucket bounds linearly and takes a lock
    for the sum and one for the bucket: ~1.5 µs, paid twice per SSE event.
    Here an observation is a bisect and two additions; :meth:`flush` adds the
    counts to the child (the same buckets ``observe`` would have chosen: the
    first bound >= the value). Relies on prometheus-client's ``Histogram``
    internals (``_upper_bounds``, ``_buckets``, ``_sum``; pinned < 0.27).
    """

    __slots__ = ("_bounds", "_buckets", "_counts", "_n", "_sum", "_total")

    def __init__(self, child: Histogram) -> None:
        self._bounds = child._upper_bounds
        self._buckets = child._buckets
        self._sum = child._sum
        self._counts = [0] * len(self._bounds)
        self._n = 0
        self._total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._total += value
        self._n += 1
        if self._n >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._n:
            return
        counts = self._counts
        for i, count in enumerate(counts):
            if count:
                self._buckets[i].inc(count)
                counts[i] = 0
        self._sum.inc(self._total)
        self._n, self._total = 0, 0.0


class NullRecorder:
    """Records nothing (``[server] metrics_enabled = false``); same interface."""

    __slots__ = ()

    def relabel(self, model: str, provider: str) -> None:
        return None

    def retry(self, provider: str, reason: str) -> None:
        return None

    def started(self) -> None:
        return None

    def event(self, queued_bytes: int, queued_delta: int, waited_s: float) -> None:
        return None

    def itl(self, gap_s: float) -> None:
        return None

    def unqueue(self, queued_bytes: int) -> None:
        return None

    def tokens(self, output_tokens: int | None, input_tokens: int | None) -> None:
        return None

    def finished(self, outcome: Outcome) -> None:
        stream_finished(outcome)  # OpenTelemetry spans and GenAI metrics (when on)

    def deployment(self, name: str, itl: Histogram | None) -> None:
        return None


class StreamRecorder(NullRecorder):
    """Records one stream into :class:`~gateway.metrics.Metrics`."""

    __slots__ = ("_buffer", "_itl", "_metrics", "_model", "_provider", "_route", "_started")

    def __init__(self, metrics: Metrics, *, model: str, provider: str, route: str) -> None:
        self._metrics = metrics
        self._model, self._provider = model, provider
        self._route = metrics.for_route(route)
        self._started = False
        self._itl = HistogramBatch(metrics.for_model(model, provider).itl)
        self._buffer = HistogramBatch(self._route.connection_write_buffer)

    def relabel(self, model: str, provider: str) -> None:
        """A fallback serves the stream: record under its model and provider."""
        self._model, self._provider = model, provider
        self._itl.flush()
        self._itl = HistogramBatch(self._metrics.for_model(model, provider).itl)

    def retry(self, provider: str, reason: str) -> None:
        """A retry (``reason`` = the error code) or ``fallback`` before the first token."""
        self._metrics.upstream_retries.labels(provider, reason).inc()

    def started(self) -> None:
        """The stream is open (counted in ``streams_active`` until :meth:`finished`)."""
        self._started = True
        self._route.streams_active.inc()

    def event(self, queued_bytes: int, queued_delta: int, waited_s: float) -> None:
        """After one SSE event: bytes still queued toward the client, their
        change since the last event, and the drain's wait (seconds)."""
        self._buffer.observe(queued_bytes)
        if queued_delta:
            self._metrics.write_buffer.inc(queued_delta)
        if waited_s > 0.0:
            self._route.backpressure_waits.inc()
            self._route.backpressure_wait_seconds.observe(waited_s)

    def itl(self, gap_s: float) -> None:
        self._itl.observe(gap_s)

    def unqueue(self, queued_bytes: int) -> None:
        """The stream ended with ``queued_bytes`` still counted toward its client."""
        if queued_bytes:
            self._metrics.write_buffer.dec(queued_bytes)

    def tokens(self, output_tokens: int | None, input_tokens: int | None) -> None:
        """Count a request's tokens under the model and provider that served it."""
        children = self._metrics.for_model(self._model, self._provider)
        if output_tokens:
            children.output_tokens.inc(output_tokens)
        if input_tokens:
            children.input_tokens.inc(input_tokens)

    def finished(self, outcome: Outcome) -> None:
        """Record the stream's end: timings, tokens, termination reason; takes
        this stream's bytes out of ``sluice_write_buffer_bytes``."""
        m = self._metrics
        self._itl.flush()
        self._buffer.flush()
        if self._started:
            self._route.streams_active.dec()
        m.terminations.labels(outcome.model, outcome.provider, outcome.reason.value).inc()
        children = m.for_model(outcome.model, outcome.provider)
        clock = outcome.clock
        if clock.ttft is not None:
            children.ttft.observe(clock.ttft)
        if clock.upstream_ttft is not None:
            children.upstream_ttft.observe(clock.upstream_ttft)
        tpot = clock.tpot(outcome.output_tokens)
        if tpot is not None:
            children.tpot.observe(tpot)
        if outcome.committed:
            children.stream_duration.observe(outcome.end - clock.arrival)
        if outcome.upstream_cancel_s is not None:
            m.upstream_cancel.labels(outcome.provider).observe(outcome.upstream_cancel_s)
        self.tokens(outcome.output_tokens, outcome.input_tokens)
        stream_finished(outcome)  # OpenTelemetry spans and GenAI metrics (when on)

    def deployment(self, name: str, itl: Histogram | None) -> None:
        """A deployment (``name``) serves the stream: its ITL is also
        recorded into ``itl`` (``sluice_deployment_inter_token_latency_seconds``)."""
        if itl is not None:
            self._itl.flush()
            self._itl = TeeBatch(self._itl, HistogramBatch(itl))


class TeeBatch(HistogramBatch):
    """Two batches observed together (a model's ITL and its deployment's)."""

    __slots__ = ("_also",)

    def __init__(self, first: HistogramBatch, also: HistogramBatch) -> None:
        self._bounds, self._buckets, self._sum = first._bounds, first._buckets, first._sum
        self._counts, self._n, self._total = first._counts, first._n, first._total
        self._also = also

    def observe(self, value: float) -> None:
        super().observe(value)
        self._also.observe(value)

    def flush(self) -> None:
        super().flush()
        self._also.flush()


Recorder = NullRecorder
"""The recorder interface (both classes)."""


def make_recorder(metrics: Metrics | None, *, model: str, provider: str, route: str) -> Recorder:
    """A :class:`StreamRecorder`, or a :class:`NullRecorder` when ``metrics`` is None."""
    if metrics is None:
        return NullRecorder()
    return StreamRecorder(metrics, model=model, provider=provider, route=route)


class ReplayRecorder(StreamRecorder):
    """Records a stored stream's reader: delivery (open streams, buffers,
    backpressure, TTFT and ITL as delivered, how it ended) but no tokens:
    its generation counted them when it produced them."""

    __slots__ = ()

    def tokens(self, output_tokens: int | None, input_tokens: int | None) -> None:
        return None


def make_replay_recorder(metrics: Metrics | None, *, model: str, route: str) -> Recorder:
    """A :class:`ReplayRecorder` (provider label ``store``), or a
    :class:`NullRecorder` when ``metrics`` is None."""
    if metrics is None:
        return NullRecorder()
    return ReplayRecorder(metrics, model=model, provider="store", route=route)
