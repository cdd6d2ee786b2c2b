"""Every Prometheus metric Sluice exports, defined once on a registry.

Names, types and labels are the contract in docs/architecture.md ("Metric contract"); dashboards
and alerts depend on them. Units are base units (seconds, bytes).

Multi-process (several worker processes): set ``PROMETHEUS_MULTIPROC_DIR``
before start; gauges carry an explicit ``multiprocess_mode`` and /metrics
aggregates the workers' files (prometheus-client docs, "Multiprocess Mode").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import __version__
from .termination import Termination

TTFT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""TTFT from 5 ms to 300 s."""

ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.06, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""ITL and TPOT from 1 ms to 10 s, dense between 5 and 100 ms."""

DURATION_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

BUFFER_BUCKETS = tuple(float(256 * 4**i) for i in range(9))
"""Bytes in powers of 4 from 256 B to 16 MiB."""

WAIT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
CANCEL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HTTP_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

TERMINATION_REASONS = tuple(t.value for t in Termination)

_MODEL = ("model", "provider")

KEY_LIMITS = ("requests", "tokens", "concurrency", "budget", "usd_budget", "model")
"""``limit`` values of ``sluice_key_rejections_total``."""
AUTH_FAILURES = ("missing", "unknown", "expired")
"""``reason`` values of ``sluice_auth_failures_total``."""


def multiprocess_enabled() -> bool:
    """True when prometheus-client's multiprocess mode is configured."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ModelChildren(NamedTuple):
    """The label children of one (model, provider), resolved once per process."""

    ttft: Histogram
    upstream_ttft: Histogram
    itl: Histogram
    tpot: Histogram
    stream_duration: Histogram
    output_tokens: Counter
    input_tokens: Counter


class RouteChildren(NamedTuple):
    """The label children of one route template, resolved once per process."""

    streams_active: Gauge
    connection_write_buffer: Histogram
    backpressure_waits: Counter
    backpressure_wait_seconds: Histogram


@dataclass(frozen=True, slots=True)
class Metrics:
    """The metric families. Build with :meth:`create`; tests pass a fresh registry."""

    registry: CollectorRegistry
    build_info: Gauge
    requests: Counter
    request_duration: Histogram
    streams_active: Gauge
    ttft: Histogram
    upstream_ttft: Histogram
    itl: Histogram
    tpot: Histogram
    stream_duration: Histogram
    output_tokens: Counter
    input_tokens: Counter
    terminations: Counter
    connection_write_buffer: Histogram
    write_buffer: Gauge
    write_buffer_limit: Gauge
    backpressure_waits: Counter
    backpressure_wait_seconds: Histogram
    upstream_cancel: Histogram
    upstream_retries: Counter
    admission_rejections: Counter
    key_tokens: Counter
    key_estimated_tokens: Counter
    key_rejections: Counter
    auth_failures: Counter
    key_budget_remaining: Gauge
    key_budget: Gauge
    quota_state_errors: Counter
    state_pool_exhausted: Counter
    stream_resumes: Counter
    replayed_events: Counter
    detached_active: Gauge
    detached_terminations: Counter
    # Cost (gateway/cost).
    spend: Counter
    estimated_spend: Counter
    deployments: DeploymentFamilies
    # request bodies in flight (issue 26: gateway/body_budget.py)
    body_in_flight: Gauge
    bodies_in_flight: Gauge
    body_budget: Gauge
    body_budget_waits: Counter
    body_budget_rejections: Counter
    _by_model: dict[tuple[str, str], ModelChildren] = field(default_factory=dict)
    _by_route: dict[str, RouteChildren] = field(default_factory=dict)

    def for_model(self, model: str, provider: str) -> ModelChildren:
        """``(model, provider)``'s children (``labels()`` costs a few µs a call;
        the label values are bounded by the config)."""
        children = self._by_model.get((model, provider))
        if children is None:
            labels = (model, provider)
            children = self._by_model[labels] = ModelChildren(
                self.ttft.labels(*labels),
                self.upstream_ttft.labels(*labels),
                self.itl.labels(*labels),
                self.tpot.labels(*labels),
                self.stream_duration.labels(*labels),
                self.output_tokens.labels(*labels),
                self.input_tokens.labels(*labels),
            )
        return children

    def for_route(self, route: str) -> RouteChildren:
        """``route``'s children (route templates are bounded by the app's routes)."""
        children = self._by_route.get(route)
        if children is None:
            children = self._by_route[route] = RouteChildren(
                self.streams_active.labels(route),
                self.connection_write_buffer.labels(route),
                self.backpressure_waits.labels(route),
                self.backpressure_wait_seconds.labels(route),
            )
        return children

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Define every family on ``registry`` (a new one if None)."""
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ns = "sluice"
        metrics = cls(
            registry=reg,
            build_info=Gauge(
                "build_info", "Sluice build; the value is always 1.", ["version"],
                namespace=ns, registry=reg, multiprocess_mode="max",
            ),
            requests=Counter(
                "requests", "HTTP requests handled, by route template, method and status.",
                ["route", "method", "status"], namespace=ns, registry=reg,
            ),
            request_duration=Histogram(
                "request_duration_seconds",
                "HTTP request duration in seconds, arrival to handler return "
                "(for a stream: to its last byte).",
                ["route", "method"], namespace=ns, registry=reg, buckets=HTTP_BUCKETS,
            ),
            streams_active=Gauge(
                "streams_active", "SSE streams open now.", ["route"],
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            ttft=Histogram(
                "time_to_first_token_seconds",
                "Seconds from request arrival to the first content event written and "
                "drained to the client.",
                _MODEL, namespace=ns, registry=reg, buckets=TTFT_BUCKETS,
            ),
            upstream_ttft=Histogram(
                "upstream_time_to_first_token_seconds",
                "Seconds from sending the upstream request to receiving its first content chunk.",
                _MODEL, namespace=ns, registry=reg, buckets=TTFT_BUCKETS,
            ),
            itl=Histogram(
                "inter_token_latency_seconds",
                "Seconds between successive content events written to the client; "
                "one event may carry more than one token.",
                _MODEL, namespace=ns, registry=reg, buckets=ITL_BUCKETS,
            ),
            tpot=Histogram(
                "time_per_output_token_seconds",
                "Per-stream time per output token in seconds (vLLM): (last content "
                "written - first content written) / (output tokens - 1).",
                _MODEL, namespace=ns, registry=reg, buckets=ITL_BUCKETS,
            ),
            stream_duration=Histogram(
                "stream_duration_seconds",
                "Seconds from request arrival to the stream's last event.",
                _MODEL, namespace=ns, registry=reg, buckets=DURATION_BUCKETS,
            ),
            output_tokens=Counter(
                "output_tokens",
                "Output tokens streamed; from upstream usage when given, else content events.",
                _MODEL, namespace=ns, registry=reg,
            ),
            input_tokens=Counter(
                "input_tokens", "Input (prompt) tokens, from upstream usage when given.",
                _MODEL, namespace=ns, registry=reg,
            ),
            terminations=Counter(
                "stream_terminations",
                "Streams ended, by reason: " + ", ".join(TERMINATION_REASONS) + ".",
                [*_MODEL, "reason"], namespace=ns, registry=reg,
            ),
            connection_write_buffer=Histogram(
                "connection_write_buffer_bytes",
                "Bytes queued toward one client (asyncio transport buffer + kernel send "
                "queue), sampled after each event written.",
                ["route"], namespace=ns, registry=reg, buckets=BUFFER_BUCKETS,
            ),
            write_buffer=Gauge(
                "write_buffer_bytes",
                "Bytes queued toward all clients now, as of each connection's last sample.",
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            write_buffer_limit=Gauge(
                "connection_write_buffer_limit_bytes",
                "Configured bound on bytes queued toward one client (downstream_buffer_bytes).",
                namespace=ns, registry=reg, multiprocess_mode="max",
            ),
            backpressure_waits=Counter(
                "backpressure_waits", "Events whose drain had to wait for the client's socket.",
                ["route"], namespace=ns, registry=reg,
            ),
            backpressure_wait_seconds=Histogram(
                "backpressure_wait_seconds", "Seconds one drain waited for the client's socket.",
                ["route"], namespace=ns, registry=reg, buckets=WAIT_BUCKETS,
            ),
            upstream_cancel=Histogram(
                "upstream_cancel_seconds",
                "Seconds from noticing the client is gone to the upstream connection closed.",
                ["provider"], namespace=ns, registry=reg, buckets=CANCEL_BUCKETS,
            ),
            upstream_retries=Counter(
                "upstream_retries",
                "Retries and fallbacks before the first token, by provider and reason.",
                ["provider", "reason"], namespace=ns, registry=reg,
            ),
            admission_rejections=Counter(
                "admission_rejections", "Requests turned away before streaming, by reason.",
                ["reason"], namespace=ns, registry=reg,
            ),
            key_tokens=Counter(
                "key_tokens",
                "Tokens spent by client key (its configured name), model and type "
                "(input, output); from upstream usage when given.",
                ["key", "model", "type"], namespace=ns, registry=reg,
            ),
            key_estimated_tokens=Counter(
                "key_estimated_tokens",
                "The part of key_tokens_total that Sluice estimated because the upstream "
                "reported no usage, by key, model and type (input, output).",
                ["key", "model", "type"], namespace=ns, registry=reg,
            ),
            key_rejections=Counter(
                "key_rejections",
                "Requests of a client key turned away, by limit: " + ", ".join(KEY_LIMITS) + ".",
                ["key", "limit"], namespace=ns, registry=reg,
            ),
            auth_failures=Counter(
                "auth_failures",
                "Requests refused 401, by reason: " + ", ".join(AUTH_FAILURES) + ".",
                ["reason"], namespace=ns, registry=reg,
            ),
            key_budget_remaining=Gauge(
                "key_budget_remaining_tokens",
                "Tokens a client key may still spend this budget period (token_budget minus "
                "what it spent), as of its last request.",
                ["key"], namespace=ns, registry=reg, multiprocess_mode="mostrecent",
            ),
            key_budget=Gauge(
                "key_token_budget_tokens",
                "A client key's configured token_budget per budget period (for ratios "
                "with sluice_key_budget_remaining_tokens).",
                ["key"], namespace=ns, registry=reg, multiprocess_mode="mostrecent",
            ),
            quota_state_errors=Counter(
                "quota_state_errors",
                "Quota store (Redis) calls that failed, by what happened to the request: "
                "rejected (503 state_unavailable), allowed (fail_open, uncounted), "
                "uncharged (its tokens or slot could not be recorded).",
                ["action"], namespace=ns, registry=reg,
            ),
            state_pool_exhausted=Counter(
                "state_pool_exhausted",
                "Redis commands that found no free connection in the pool within "
                "[state] pool_timeout_s (the process was busy; Redis was not down), by "
                "store: quota, stream.",
                ["store"], namespace=ns, registry=reg,
            ),
            stream_resumes=Counter(
                "stream_resumes",
                "Reads of a stored stream by a later request than the one that started it "
                "(GET /v1/streams/{id}; GET /v1/responses/{id}?stream=true, which counts a "
                "background response's first read too), by route.",
                ["route"], namespace=ns, registry=reg,
            ),
            replayed_events=Counter(
                "stream_replayed_events",
                "Events a resume sent from the store that were there before it began "
                "(the rest it followed live), by route.",
                ["route"], namespace=ns, registry=reg,
            ),
            detached_active=Gauge(
                "detached_streams_active",
                "Generations running detached from their request, into the stream store "
                "(background responses, resumable streams).",
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            detached_terminations=Counter(
                "detached_stream_terminations",
                "Detached generations ended, by reason: " + ", ".join(TERMINATION_REASONS) + ".",
                ["reason"], namespace=ns, registry=reg,
            ),
            # Cost (gateway/cost).
            spend=Counter(
                "spend_usd",
                "US dollars spent, by client key (its configured name; (anonymous) without one) "
                "and model, at the model's price (gateway/cost), to the micro-dollar.",
                ["key", "model"], namespace=ns, registry=reg,
            ),
            estimated_spend=Counter(
                "estimated_spend_usd",
                "The part of spend_usd_total priced from token counts Sluice estimated "
                "because the upstream reported no usage, by key and model.",
                ["key", "model"], namespace=ns, registry=reg,
            ),
            deployments=DeploymentFamilies.create(ns, reg),
            body_in_flight=Gauge(
                "request_body_bytes_in_flight",
                "Request-body bytes held now (being read, or kept until their request ends).",
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            bodies_in_flight=Gauge(
                "request_bodies_in_flight",
                "Request bodies holding part of the budget now.",
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            body_budget=Gauge(
                "request_body_budget_bytes",
                "Configured bound on request-body bytes in flight (max_body_bytes_in_flight), "
                "per process.",
                namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            body_budget_waits=Counter(
                "request_body_budget_waits",
                "Request bodies that waited for room in the budget.",
                namespace=ns, registry=reg,
            ),
            body_budget_rejections=Counter(
                "request_body_budget_rejections",
                "Requests refused (503) because the body budget stayed full.",
                namespace=ns, registry=reg,
            ),
        )  # fmt: skip
        metrics.build_info.labels(version=__version__).set(1)
        return metrics


# -- deployments (issue 24: routing across a model's deployments) -------------------

_DEPLOYMENT = ("model", "deployment")


class DeploymentChildren(NamedTuple):
    """The label children of one (model, deployment), resolved once per process."""

    streams_open: Gauge
    requests: Counter
    upstream_ttft: Histogram
    itl: Histogram
    cooling_down: Gauge
    cooldowns: Counter
    latency_estimate: Gauge


class QueueChildren(NamedTuple):
    """The label children of one model's deployment queue."""

    waiting: Gauge
    wait_seconds: Histogram


@dataclass(frozen=True, slots=True)
class DeploymentFamilies:
    """``sluice_deployment_*``: per deployment of a model (labels ``model``,
    ``deployment``: both bounded by the config)."""

    streams_open: Gauge
    requests: Counter
    failures: Counter
    upstream_ttft: Histogram
    itl: Histogram
    cooling_down: Gauge
    cooldowns: Counter
    latency_estimate: Gauge
    queue_waiting: Gauge
    queue_wait_seconds: Histogram
    queue_rejections: Counter

    def children(self, model: str, deployment: str) -> DeploymentChildren:
        labels = (model, deployment)
        return DeploymentChildren(
            self.streams_open.labels(*labels),
            self.requests.labels(*labels),
            self.upstream_ttft.labels(*labels),
            self.itl.labels(*labels),
            self.cooling_down.labels(*labels),
            self.cooldowns.labels(*labels),
            self.latency_estimate.labels(*labels),
        )

    def queue(self, model: str) -> QueueChildren:
        waiting, wait_seconds = self.queue_waiting, self.queue_wait_seconds
        return QueueChildren(waiting.labels(model), wait_seconds.labels(model))

    @classmethod
    def create(cls, ns: str, reg: CollectorRegistry) -> DeploymentFamilies:
        return cls(
            streams_open=Gauge(
                "deployment_streams_open",
                "Upstream streams open on a deployment (request sent -> the stream's end).",
                _DEPLOYMENT, namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            requests=Counter(
                "deployment_requests",
                "Requests sent to a deployment (each attempt, retries on it included).",
                _DEPLOYMENT, namespace=ns, registry=reg,
            ),
            failures=Counter(
                "deployment_failures",
                "Failures of a deployment before the first token, by reason (the error code: "
                "upstream_connect_error, rate_limited, overloaded, upstream_error, "
                "upstream_timeout, ...).",
                [*_DEPLOYMENT, "reason"], namespace=ns, registry=reg,
            ),
            upstream_ttft=Histogram(
                "deployment_upstream_time_to_first_token_seconds",
                "Upstream TTFT per deployment: request sent -> first chunk received.",
                _DEPLOYMENT, namespace=ns, registry=reg, buckets=TTFT_BUCKETS,
            ),
            itl=Histogram(
                "deployment_inter_token_latency_seconds",
                "Gap between content events written, per deployment that served the stream "
                "(an event may carry several tokens).",
                _DEPLOYMENT, namespace=ns, registry=reg, buckets=ITL_BUCKETS,
            ),
            cooling_down=Gauge(
                "deployment_cooling_down",
                "1 while a deployment is in cooldown or waits for its half-open trial, else 0.",
                _DEPLOYMENT, namespace=ns, registry=reg, multiprocess_mode="max",
            ),
            cooldowns=Counter(
                "deployment_cooldowns",
                "Cooldowns a deployment entered (failures in the window, or a 429's Retry-After).",
                _DEPLOYMENT, namespace=ns, registry=reg,
            ),
            latency_estimate=Gauge(
                "deployment_latency_estimate_seconds",
                "Peak EWMA of a deployment's upstream TTFT at its last observation "
                "(the latency strategy's input).",
                _DEPLOYMENT, namespace=ns, registry=reg, multiprocess_mode="max",
            ),
            queue_waiting=Gauge(
                "deployment_queue_length",
                "Requests waiting for a free deployment of the model "
                "(every one at max_concurrent_streams).",
                ["model"], namespace=ns, registry=reg, multiprocess_mode="livesum",
            ),
            queue_wait_seconds=Histogram(
                "deployment_queue_wait_seconds",
                "Time a request waited for a free deployment of the model (served or not).",
                ["model"], namespace=ns, registry=reg, buckets=WAIT_BUCKETS,
            ),
            queue_rejections=Counter(
                "deployment_queue_rejections",
                "Requests turned away with 429 because every deployment stayed full, by reason "
                "(queue_full, queue_timeout).",
                ["model", "reason"], namespace=ns, registry=reg,
            ),
        )  # fmt: skip
