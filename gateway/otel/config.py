"""``[otel]``: OpenTelemetry GenAI telemetry (off by default).

The standard ``OTEL_*`` environment variables of the OpenTelemetry SDK apply
(https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/,
https://opentelemetry.io/docs/specs/otel/protocol/exporter/):
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``_TRACES_ENDPOINT`` / ``_METRICS_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``
(+ ``_ARG``), ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_BSP_*``; and
``OTEL_SDK_DISABLED=true`` turns it all off. A key set here wins over its
variable; a key left unset leaves the variable (or the SDK's default) in force.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OtelSettings(BaseModel):
    """``[otel]``: what Sluice exports over OTLP, and whether at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Export GenAI metrics and traces. Off: no SDK is loaded and no request
    does any OpenTelemetry work."""
    protocol: Literal["http/protobuf", "grpc"] | None = None
    """OTLP transport; unset: ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf``."""
    endpoint: str | None = None
    """Collector base URL (``http://collector:4318`` for HTTP, ``http://collector:4317``
    for gRPC); HTTP gets ``/v1/traces`` and ``/v1/metrics`` appended. Unset: the
    ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables, else the SDK's localhost default."""
    service_name: str = "sluice"
    """``service.name`` of the resource (``OTEL_SERVICE_NAME`` wins when set)."""
    traces: bool = True
    """Export spans: one server span per request, one client span per upstream attempt."""
    metrics: bool = True
    """Export the GenAI metrics over OTLP."""
    prometheus: bool = False
    """Also serve the GenAI metrics on ``/metrics`` under Prometheus naming
    (``gen_ai_server_time_to_first_token_seconds``, ...), beside ``sluice_*``
    (the SDK's Prometheus reader: a second copy of every observation, so off
    unless asked; ``sluice_*`` already has the same timings)."""
    metric_export_interval_s: float | None = Field(default=None, gt=0)
    """Seconds between OTLP metric exports; unset: ``OTEL_METRIC_EXPORT_INTERVAL``
    (milliseconds), else 60 s."""
    chunk_metric: bool = False
    """Record ``gen_ai.client.operation.time_per_output_chunk``: one histogram
    observation per chunk (at the stream's end), several microseconds each
    through the SDK; off by default for that cost."""
    capture_content: bool = False
    """Record the request's messages on the upstream attempt's span
    (``gen_ai.input.messages``). Prompts are sensitive: off unless turned on."""

    @property
    def active(self) -> bool:
        """``enabled``, unless ``OTEL_SDK_DISABLED=true`` (the SDK's own switch)."""
        return self.enabled and not disabled_by_env()


def disabled_by_env() -> bool:
    """``OTEL_SDK_DISABLED=true`` (the SDK's own switch) turns telemetry off."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
