"""The OpenTelemetry SDK, set up from ``[otel]`` and the ``OTEL_*`` variables:
a ``TracerProvider`` with a batching OTLP span exporter, a ``MeterProvider``
with a periodic OTLP metric reader (HTTP/protobuf or gRPC, the SDK's own
exporters) and, for ``/metrics``, the SDK's Prometheus reader on Sluice's
registry. Imported only when ``[otel] enabled``.

The providers are Sluice's own (not installed as the process's global
ones). Shutting down flushes what is pending (in a thread: the exporters
block, and a collector may be served by this very loop in a test).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

from ..attempts import Target
from ..config import Settings
from ..middleware import route_of
from ..state import SETTINGS
from . import attributes as A
from .config import OtelSettings
from .hooks import OTEL
from .metrics import GenAIMetrics
from .tracing import RequestTrace

UNTRACED = frozenset(("/metrics", "/healthz", "/readyz"))
"""Paths that get no span: a span per scrape or probe is noise."""

SCOPE = "sluice"
"""The instrumentation scope of Sluice's spans and metrics."""


class Telemetry:
    """The providers, the instruments and each model's upstream attributes,
    resolved once. :meth:`begin` starts one request's :class:`RequestTrace`."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None) -> None:
        otel = settings.otel
        attrs: dict[str, Any] = {}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attrs[SERVICE_NAME] = otel.service_name
        resource = Resource.create(attrs)
        self.capture_content = otel.capture_content
        self.chunk_metric = otel.chunk_metric
        self.propagator: TextMapPropagator = TraceContextTextMapPropagator()
        self._upstreams = {m.name: A.upstream_of(m) for m in settings.models}
        self._tracer_provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None
        if otel.traces:
            self._tracer_provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER
            self._tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(otel)))
            self.tracer = self._tracer_provider.get_tracer(SCOPE)
        readers: list[MetricReader] = []
        if otel.metrics:
            interval = otel.metric_export_interval_s
            readers.append(
                PeriodicExportingMetricReader(
                    _metric_exporter(otel),
                    export_interval_millis=None if interval is None else interval * 1000,
                )
            )
        if otel.prometheus and registry is not None:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader(disable_target_info=True, registry=registry))
        self._meter_provider: MeterProvider | None = None
        self.metrics: GenAIMetrics | None = None
        if readers:
            self._meter_provider = MeterProvider(metric_readers=readers, resource=resource)
            self.metrics = GenAIMetrics(self._meter_provider.get_meter(SCOPE))

    def begin(self, request: web.Request) -> RequestTrace | None:
        """The request's trace; None for the operator's probes and scrapes."""
        if request.path in UNTRACED:
            return None
        return RequestTrace(self, request, route_of(request))

    def upstream(self, target: Target) -> A.Upstream:
        """``target``'s upstream attributes (resolved at start-up)."""
        upstream = self._upstreams.get(target.model)
        if upstream is None:
            upstream = A.Upstream(A.provider_name(target.provider.kind), target.model, None, None)
        return upstream

    def trace_headers(self, span: trace.Span | None) -> dict[str, str] | None:
        """``traceparent`` (and ``tracestate``) naming ``span`` (W3C Trace Context,
        https://www.w3.org/TR/trace-context/); None without a span."""
        if span is None:
            return None
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def shutdown(self) -> None:
        """Flush and stop the providers (blocking: exports what is pending)."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()


def _protocol(otel: OtelSettings) -> str:
    return otel.protocol or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")


def _endpoint(otel: OtelSettings, signal: str) -> str | None:
    if otel.endpoint is None:
        return None  # the exporter reads OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT
    if _protocol(otel) == "grpc":
        return otel.endpoint
    return otel.endpoint.rstrip("/") + f"/v1/{signal}"


def _span_exporter(otel: OtelSettings) -> SpanExporter:
    endpoint = _endpoint(otel, "traces")
    if _protocol(otel) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(endpoint=endpoint)


def _metric_exporter(otel: OtelSettings) -> MetricExporter:
    endpoint = _endpoint(otel, "metrics")
    if _protocol(otel) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter(endpoint=endpoint)


def telemetry_ctx(
    registry: CollectorRegistry | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx``: the app's :class:`Telemetry` (``OTEL``) while it
    runs, flushed and shut down after. ``registry``: where ``/metrics`` reads
    (None: no Prometheus reader, e.g. with several worker processes)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        telemetry = Telemetry(app[SETTINGS], registry)
        app[OTEL] = telemetry
        try:
            yield
        finally:
            await asyncio.to_thread(telemetry.shutdown)

    return ctx
