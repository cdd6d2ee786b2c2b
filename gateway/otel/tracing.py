"""One request's telemetry: its server span, its upstream attempts' client
spans, and the GenAI metrics recorded when it ends.

Span tree (GenAI spans as :mod:`gateway.otel.attributes` cites)::

    POST /v1/chat/completions          SERVER  (parent: the client's traceparent)
      chat gpt-4o-mini                 CLIENT  attempt 1 (error.type=rate_limited)
      chat gpt-4o-mini                 CLIENT  attempt 2, a retry
      chat claude-haiku                CLIENT  attempt 3, a fallback, served:
                                               events sluice.first_token,
                                               sluice.end_of_stream

Retries and fallbacks are sibling attempt spans under the server span. An
attempt's span is started when the attempt starts (its id goes upstream in
``traceparent``), and everything else, attributes, events and the end, is
set when the stream's :class:`~gateway.outcome.Outcome` is recorded (or the
non-streaming request ends), with explicit timestamps taken from the
stream's ``perf_counter`` clock: nothing is done per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import structlog
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id

from ..attempts import OpenUpstream, Target
from ..errors import GatewayError
from ..outcome import Outcome
from ..state import ARRIVAL, SUMMARY
from . import attributes as A
from .hooks import CURRENT, UPSTREAM_HEADERS

if TYPE_CHECKING:
    from .sdk import Telemetry

T = TypeVar("T")
log = structlog.get_logger("gateway.otel")


class _Epoch:
    """``perf_counter`` seconds -> epoch nanoseconds (what span timestamps
    take), from one pair of readings."""

    __slots__ = ("_ns", "_perf")

    def __init__(self) -> None:
        self._perf, self._ns = time.perf_counter(), time.time_ns()

    def ns(self, perf: float) -> int:
        return self._ns - int((self._perf - perf) * 1e9)


class Attempt:
    """One upstream attempt: when it began and ended, how, and its span."""

    __slots__ = ("end", "error", "first", "number", "span", "start", "streaming", "upstream")

    def __init__(self, number: int, upstream: A.Upstream, span: trace.Span | None) -> None:
        self.number = number
        self.upstream = upstream
        self.span = span
        self.start = time.perf_counter()
        self.first: float | None = None
        """When the attempt returned: its first chunk (a stream) or whole answer."""
        self.end: float | None = None
        self.error: str | None = None
        self.streaming = False


class RequestTrace:
    """See the module docstring. Built by :meth:`Telemetry.begin`."""

    __slots__ = (
        "_arrival",
        "_attempts",
        "_context_token",
        "_current_token",
        "_finished",
        "_in_flight",
        "_served",
        "_span",
        "_summary",
        "_telemetry",
        "usage",
    )

    def __init__(self, telemetry: Telemetry, request: web.Request, route: str) -> None:
        self._telemetry = telemetry
        self._arrival: float = request.get(ARRIVAL, time.perf_counter())
        self._summary = request.get(SUMMARY)
        self._attempts: list[Attempt] = []
        self._in_flight = 0
        self._finished = False
        self._served: A.Upstream | None = None
        self._span: trace.Span | None = None
        self._context_token: Token[otel_context.Context] | None = None
        self.usage: tuple[int | None, int | None] | None = None
        """A non-streaming answer's (input, output) tokens (:func:`.hooks.call_usage`)."""
        tracer = telemetry.tracer
        if tracer is not None:
            parent = telemetry.propagator.extract(request.headers)
            self._span = span = tracer.start_span(
                f"{request.method} {route}",
                context=parent,
                kind=SpanKind.SERVER,
                start_time=_Epoch().ns(self._arrival),
                attributes={
                    "http.request.method": request.method,
                    "http.route": route,
                    "url.path": request.path,
                },
            )
            self._context_token = otel_context.attach(trace.set_span_in_context(span, parent))
            if self._summary is not None:
                self._summary["trace_id"] = format_trace_id(span.get_span_context().trace_id)
        self._current_token = CURRENT.set(self)

    # -- attempts ------------------------------------------------------------

    def tracked(
        self, attempt: Callable[[Target], Awaitable[T]]
    ) -> Callable[[Target], Awaitable[T]]:
        """``attempt`` wrapped: each call an :class:`Attempt` (:func:`.hooks.track_attempts`)."""

        async def run(target: Target) -> T:
            if target.provider.kind == "store":  # a stored stream's reader: no upstream
                return await attempt(target)
            try:
                record = self._begin_attempt(target)
                extra = self._telemetry.trace_headers(record.span)
            except Exception:  # telemetry never fails an attempt
                log.exception("otel_failed", step="attempt")
                return await attempt(target)
            headers = UPSTREAM_HEADERS.set(extra)
            self._in_flight += 1
            try:
                result = await attempt(target)
            except BaseException as exc:
                record.end = time.perf_counter()
                record.error = _exception_type(exc)
                raise
            finally:
                self._in_flight -= 1
                UPSTREAM_HEADERS.reset(headers)
            record.first = time.perf_counter()
            record.streaming = isinstance(result, OpenUpstream)
            self._served = record.upstream
            return result

        return run

    def _begin_attempt(self, target: Target) -> Attempt:
        telemetry = self._telemetry
        upstream = telemetry.upstream(target)
        number = len(self._attempts) + 1
        span = None
        if telemetry.tracer is not None:
            attrs: dict[str, Any] = {**upstream.attributes(), A.ATTEMPT: number}
            if telemetry.capture_content:
                messages = target.body.get("messages", target.body.get("input"))
                if messages is not None:
                    attrs[A.INPUT_MESSAGES] = orjson.dumps(messages).decode()
            span = telemetry.tracer.start_span(
                f"{A.CHAT} {upstream.model}", kind=SpanKind.CLIENT, attributes=attrs
            )
        record = Attempt(number, upstream, span)
        self._attempts.append(record)
        return record

    # -- the end -------------------------------------------------------------

    def stream_finished(self, outcome: Outcome) -> None:
        """End the attempts' spans and record the GenAI metrics from ``outcome``.
        Never raises (a telemetry failure is logged, the stream unharmed)."""
        try:
            self._stream_finished(outcome)
        except Exception:
            log.exception("otel_failed", step="stream_finished")

    def _stream_finished(self, outcome: Outcome) -> None:
        if self._finished or outcome.provider == "store":
            return
        self._finished = True
        epoch = _Epoch()
        clock = outcome.clock
        error = A.error_type(outcome.error, outcome.reason)
        served = next((a for a in reversed(self._attempts) if a.first is not None), None)
        metrics = self._telemetry.metrics
        for a in self._attempts:
            a.streaming = True
            if a is served:
                a.end, a.error = outcome.end, error
            elif a.end is None:  # still opening (the stream ended meanwhile): cut short
                a.end, a.error = outcome.end, error or "cancelled"
            self._end_attempt(a, epoch)
        if served is not None and served.span is not None:
            span = served.span
            if clock.first_received is not None:
                span.add_event("sluice.first_token", timestamp=epoch.ns(clock.first_received))
            span.add_event(
                "sluice.end_of_stream",
                {A.TERMINATION: outcome.reason.value},
                timestamp=epoch.ns(outcome.end),
            )
            span.set_attributes(_usage_attributes(outcome))
            span.end(end_time=epoch.ns(outcome.end))
        if self._span is not None:
            self._span.set_attributes(_usage_attributes(outcome))
            if clock.first_written is not None:
                self._span.add_event("sluice.first_token", timestamp=epoch.ns(clock.first_written))
        if metrics is None:
            return
        upstream = served.upstream if served else None
        server = self._server_attributes(upstream, error)
        metrics.request_duration.record(outcome.end - clock.arrival, server)
        if error is not None:  # the spec gives error.type to the duration only
            server = self._server_attributes(upstream, None)
        if clock.ttft is not None:
            metrics.ttft.record(clock.ttft, server)
        tpot = clock.tpot(outcome.output_tokens)
        if tpot is not None and error is None:
            metrics.tpot.record(tpot, server)
        if served is None:
            return
        leg = served.upstream.attributes()
        if served.first is not None:
            metrics.time_to_first_chunk.record(served.first - served.start, leg)
        if self._telemetry.chunk_metric:
            record_gap = metrics.time_per_output_chunk.record
            for gap in clock.gaps:
                record_gap(gap, leg)
        if outcome.input_tokens:
            metrics.token_usage.record(outcome.input_tokens, {**leg, A.TOKEN_TYPE: "input"})
        if outcome.output_tokens:
            metrics.token_usage.record(outcome.output_tokens, {**leg, A.TOKEN_TYPE: "output"})

    def end(self, status: int) -> None:
        """The request is answered (``status``; 499: the client left): end the
        server span, and for a non-streaming request its attempts. Never raises;
        the request's context is given back whatever happens."""
        try:
            self._end(status)
        except Exception:
            log.exception("otel_failed", step="end")
        finally:
            CURRENT.reset(self._current_token)
            if self._context_token is not None:
                otel_context.detach(self._context_token)

    def _end(self, status: int) -> None:
        summary = self._summary or {}
        error = summary.get("error_code")
        error_type = str(error) if error else ("client_disconnected" if status == 499 else None)
        streaming = any(a.streaming for a in self._attempts)
        if not self._finished and self._attempts and not self._in_flight and not streaming:
            self._finish_call(status, error_type)
        span = self._span
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        model = summary.get("model")
        if isinstance(model, str):
            span.set_attributes({A.OPERATION: A.CHAT, A.REQUEST_MODEL: model})
        if self._served is not None:
            span.set_attributes(
                {A.PROVIDER: self._served.provider, A.RESPONSE_MODEL: self._served.model}
            )
        if status >= 500 or error_type is not None:
            span.set_attribute(A.ERROR_TYPE, error_type or str(status))
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, str(summary.get("error", ""))[:200]))
        span.end()

    def _finish_call(self, status: int, error_type: str | None) -> None:
        """A non-streaming request's attempts, and its server duration."""
        self._finished = True
        epoch = _Epoch()
        now = time.perf_counter()
        tokens: dict[str, int] = {}
        if self.usage is not None:
            for kind, count in zip(("input", "output"), self.usage, strict=True):
                if count:
                    tokens[kind] = count
        for a in self._attempts:
            if a.end is None:
                a.end, a.error = (a.first or now), (error_type if status >= 400 else None)
            if a.first is not None and a.span is not None:
                a.span.set_attributes({f"gen_ai.usage.{k}_tokens": n for k, n in tokens.items()})
            self._end_attempt(a, epoch)
        metrics = self._telemetry.metrics
        if metrics is not None:
            server = self._server_attributes(self._served, error_type)
            metrics.request_duration.record(now - self._arrival, server)
            if self._served is not None:
                leg = self._served.attributes()
                for kind, count in tokens.items():
                    metrics.token_usage.record(count, {**leg, A.TOKEN_TYPE: kind})

    def _end_attempt(self, a: Attempt, epoch: _Epoch) -> None:
        """Record an attempt's duration; end its span unless it served a
        stream (:meth:`stream_finished` ends that one after its events)."""
        end = a.end if a.end is not None else time.perf_counter()
        attrs: dict[str, Any] = a.upstream.attributes()
        if a.error is not None:
            attrs[A.ERROR_TYPE] = a.error
        metrics = self._telemetry.metrics
        if metrics is not None:
            metrics.operation_duration.record(end - a.start, attrs)
        span = a.span
        if span is None:
            return
        if a.streaming:
            span.set_attribute(A.REQUEST_STREAM, True)
            if a.first is not None:
                span.set_attribute(A.TIME_TO_FIRST_CHUNK, a.first - a.start)
        if a.error is not None:
            span.set_attribute(A.ERROR_TYPE, a.error)
            span.set_status(Status(StatusCode.ERROR))
        if not (a.streaming and a.first is not None):
            span.end(end_time=epoch.ns(end))

    def _server_attributes(
        self, served: A.Upstream | None, error_type: str | None
    ) -> dict[str, str | int]:
        summary = self._summary or {}
        asked = summary.get("model")
        attrs: dict[str, str | int] = {A.OPERATION: A.CHAT}
        primary = self._attempts[0].upstream if self._attempts else None
        provider = served or primary
        if provider is not None:
            attrs[A.PROVIDER] = provider.provider
        if isinstance(asked, str):
            attrs[A.REQUEST_MODEL] = asked
        if served is not None:
            attrs[A.RESPONSE_MODEL] = served.model
        if error_type is not None:
            attrs[A.ERROR_TYPE] = error_type
        return attrs


def _usage_attributes(outcome: Outcome) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        A.TERMINATION: outcome.reason.value,
        A.USAGE_OUTPUT: outcome.output_tokens,
        A.USAGE_ESTIMATED: outcome.usage_estimated,
    }
    if outcome.input_tokens is not None:
        attrs[A.USAGE_INPUT] = outcome.input_tokens
    error = A.error_type(outcome.error, outcome.reason)
    if error is not None:
        attrs[A.ERROR_TYPE] = error
    return attrs


def _exception_type(exc: BaseException) -> str:
    """An attempt's ``error.type``: the error's code, else the exception's class name."""
    if isinstance(exc, GatewayError) and exc.code:
        return exc.code
    return type(exc).__name__
