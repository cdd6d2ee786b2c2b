"""The GenAI metric instruments, declared once, with the spec's types, units
and explicit bucket boundaries (:mod:`gateway.otel.attributes` cites the
version followed).

=================================================  =========  =====================================
instrument (type histogram)                        unit       what Sluice measures
=================================================  =========  =====================================
``gen_ai.server.request.duration``                 ``s``      arrival -> end of the response
``gen_ai.server.time_to_first_token``              ``s``      arrival -> first content event written
``gen_ai.server.time_per_output_token``            ``s``      vLLM's TPOT, completed streams only
``gen_ai.client.token.usage``                      ``{token}``  input, output tokens (served)
``gen_ai.client.operation.duration``               ``s``      one upstream attempt, sent -> end
``gen_ai.client.operation.time_to_first_chunk``    ``s``      upstream request sent -> first chunk
``gen_ai.client.operation.time_per_output_chunk``  ``s``      gaps between content chunks
=================================================  =========  =====================================

Server metrics carry ``gen_ai.request.model`` as the client asked it and
``gen_ai.response.model``/``gen_ai.provider.name`` of the model that served
(a fallback's, if one did); client metrics carry the upstream leg's
attributes (:meth:`~gateway.otel.attributes.Upstream.attributes`), with
``server.address``/``server.port`` of the upstream. ``error.type`` as
:func:`~gateway.otel.attributes.error_type` says.

``time_per_output_chunk`` (``[otel] chunk_metric``, off by default: one
SDK observation per chunk) is recorded from the stream's content-event gaps
(:attr:`gateway.timing.StreamClock.gaps`, the events as written toward the
client): the stream core keeps no per-chunk receive times, and adding them
would be per-chunk work. Without backpressure the two are the same gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.metrics import Histogram, Meter

TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""``gen_ai.server.request.duration`` and the ``gen_ai.client.operation.*`` metrics."""
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

Attributes = Mapping[str, str | int]


class GenAIMetrics:
    """The seven instruments on one ``Meter``."""

    __slots__ = (
        "operation_duration",
        "request_duration",
        "time_per_output_chunk",
        "time_to_first_chunk",
        "token_usage",
        "tpot",
        "ttft",
    )

    def __init__(self, meter: Meter) -> None:
        def histogram(name: str, unit: str, what: str, buckets: Iterable[float]) -> Histogram:
            return meter.create_histogram(
                name, unit=unit, description=what, explicit_bucket_boundaries_advisory=list(buckets)
            )

        self.request_duration = histogram(
            "gen_ai.server.request.duration", "s",
            "Generative AI server request duration such as time-to-last byte or last output token.",
            DURATION_BUCKETS,
        )  # fmt: skip
        self.ttft = histogram(
            "gen_ai.server.time_to_first_token", "s",
            "Time to generate first token for successful responses.", TTFT_BUCKETS,
        )  # fmt: skip
        self.tpot = histogram(
            "gen_ai.server.time_per_output_token", "s",
            "Time per output token generated after the first token for successful responses.",
            TPOT_BUCKETS,
        )  # fmt: skip
        self.token_usage = histogram(
            "gen_ai.client.token.usage", "{token}",
            "Number of input and output tokens used.", TOKEN_BUCKETS,
        )  # fmt: skip
        self.operation_duration = histogram(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS
        )
        self.time_to_first_chunk = histogram(
            "gen_ai.client.operation.time_to_first_chunk", "s",
            "Time to receive the first chunk, measured from when the client issues the "
            "generation request to when the first chunk is received in the response stream.",
            DURATION_BUCKETS,
        )  # fmt: skip
        self.time_per_output_chunk = histogram(
            "gen_ai.client.operation.time_per_output_chunk", "s",
            "Time per output chunk, recorded for each chunk received after the first one.",
            DURATION_BUCKETS,
        )  # fmt: skip
