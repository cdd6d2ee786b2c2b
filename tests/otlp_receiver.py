"""An in-process OTLP/HTTP receiver: what an OpenTelemetry Collector's
``otlp`` receiver accepts on ``POST /v1/traces`` and ``POST /v1/metrics``
(binary protobuf, https://opentelemetry.io/docs/specs/otlp/#otlphttp),
decoded with the official ``opentelemetry-proto`` messages; and the same
over OTLP/gRPC (:func:`grpc_receiver`, the proto package's service stubs).

No Collector binary installs from PyPI, npm or Debian here, so this stands
in for one: a real aiohttp server on loopback that the SDK's own exporters
post to. It keeps every span and the latest data point of each metric
stream (Sluice exports cumulative temporality).
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(v: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    kind: int
    """OTLP ``Span.SpanKind``: 2 server, 3 client."""
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    start_ns: int
    end_ns: int
    status_code: int
    """0 unset, 1 ok, 2 error."""
    resource: dict[str, Any]


@dataclass
class Histogram:
    name: str
    unit: str
    bounds: list[float]
    attributes: dict[str, Any]
    count: int
    sum: float
    bucket_counts: list[int]


@dataclass
class Received:
    """Everything received: spans, and the latest point of each histogram stream."""

    spans: list[Span] = field(default_factory=list)
    histograms: dict[tuple[str, frozenset[tuple[str, Any]]], Histogram] = field(
        default_factory=dict
    )
    content_types: set[str] = field(default_factory=set)

    def metric(self, name: str, **match: Any) -> list[Histogram]:
        """Data points of histogram ``name`` whose attributes include ``match``
        (dots in attribute names written as ``__``)."""
        want = {k.replace("__", "."): v for k, v in match.items()}
        return [
            h
            for h in self.histograms.values()
            if h.name == name and all(h.attributes.get(k) == v for k, v in want.items())
        ]

    async def wait_for(self, check: Any, timeout_s: float = 10.0) -> None:
        """Poll until ``check()`` is true (what the exporters send arrives
        on their own schedule)."""
        async with asyncio.timeout(timeout_s):
            while not check():
                await asyncio.sleep(0.02)

    def add_traces(self, msg: ExportTraceServiceRequest) -> None:
        for rs in msg.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=attrs(s.attributes),
                            events=[
                                (e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events
                            ],
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            status_code=s.status.code,
                            resource=resource,
                        )
                    )

    def add_metrics(self, msg: ExportMetricsServiceRequest) -> None:
        for rm in msg.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.WhichOneof("data") != "histogram":
                        continue
                    for p in m.histogram.data_points:
                        a = attrs(p.attributes)
                        self.histograms[(m.name, frozenset(a.items()))] = Histogram(
                            name=m.name,
                            unit=m.unit,
                            bounds=list(p.explicit_bounds),
                            attributes=a,
                            count=p.count,
                            sum=p.sum,
                            bucket_counts=list(p.bucket_counts),
                        )


def _body(data: bytes, encoding: str) -> bytes:
    return gzip.decompress(data) if encoding == "gzip" else data


def receiver_app(received: Received) -> web.Application:
    """OTLP/HTTP: ``POST /v1/traces`` and ``/v1/metrics`` into ``received``."""

    async def traces(request: web.Request) -> web.Response:
        received.content_types.add(request.content_type)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(
            _body(await request.read(), request.headers.get("Content-Encoding", ""))
        )
        received.add_traces(msg)
        return _ok(ExportTraceServiceResponse())

    async def metrics(request: web.Request) -> web.Response:
        received.content_types.add(request.content_type)
        msg = ExportMetricsServiceRequest()
        msg.ParseFromString(
            _body(await request.read(), request.headers.get("Content-Encoding", ""))
        )
        received.add_metrics(msg)
        return _ok(ExportMetricsServiceResponse())

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/metrics", metrics)
    return app


def _ok(message: Any) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type="application/x-protobuf")


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
        self.received.add_traces(request)
        return ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportMetricsServiceRequest, context: Any) -> Any:
        self.received.add_metrics(request)
        return ExportMetricsServiceResponse()


def grpc_receiver(received: Received) -> tuple[grpc.Server, int]:
    """OTLP/gRPC (``TraceService/Export``, ``MetricsService/Export``) on a
    loopback port, into ``received``; the caller stops the server."""
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
