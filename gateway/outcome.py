"""The one value a finished stream leaves behind: :class:`Outcome`.

The recorder (metrics) and the request's summary log line both read it, so
the two never disagree about how a stream ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialects.frames import Usage
from .errors import GatewayError
from .termination import Termination
from .timing import StreamClock


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one stream ended, and what it cost.

    Times are ``time.perf_counter()`` seconds; byte and event counts are what
    was written toward the client.
    """

    reason: Termination
    error: GatewayError | None
    model: str
    """The configured model that served the stream (a fallback's, if one did)."""
    provider: str
    clock: StreamClock
    committed: bool
    """Whether the SSE headers went out (else the client got an HTTP error)."""
    end: float
    usage: Usage | None
    output_tokens: int
    """From the usage when given (the upstream's, or estimated: ``usage.estimated``),
    else the content events counted."""
    events: int
    bytes: int
    max_queued_bytes: int
    backpressure_waits: int
    backpressure_wait_s: float
    heartbeats: int
    upstream_cancel_s: float | None
    """Client gone -> upstream connection closed, when the client left."""

    @property
    def input_tokens(self) -> int | None:
        return self.usage.input_tokens if self.usage is not None else None

    @property
    def usage_estimated(self) -> bool:
        """Whether Sluice estimated a token count the upstream did not report
        (:mod:`gateway.usage_estimate`)."""
        return self.usage is not None and self.usage.estimated

    def log_fields(self) -> dict[str, object]:
        """Fields for the request's summary log line (milliseconds for times)."""
        clock = self.clock
        itl = clock.itl_percentiles()
        error = self.error
        fields: dict[str, object] = {
            "served_model": self.model,
            "provider": self.provider,
            "outcome": self.reason.value,
            "ttft_ms": _ms(clock.ttft),
            "upstream_ttft_ms": _ms(clock.upstream_ttft),
            "upstream_headers_ms": _ms(clock.upstream_headers_s),
            "e2e_ms": _ms(clock.e2e),
            "itl_p50_ms": _ms(itl[0]) if itl else None,
            "itl_p95_ms": _ms(itl[1]) if itl else None,
            "itl_p99_ms": _ms(itl[2]) if itl else None,
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "usage_estimated": self.usage_estimated,
            "events": self.events,
            "bytes": self.bytes,
            "max_buffered_bytes": self.max_queued_bytes,
            "backpressure_waits": self.backpressure_waits,
            "backpressure_wait_ms": _ms(self.backpressure_wait_s),
            "heartbeats": self.heartbeats,
            "upstream_cancel_ms": _ms(self.upstream_cancel_s),
        }
        if error is not None:
            fields.update(error_type=error.type, error_code=error.code, error=error.message)
            if error.detail:
                fields["detail"] = error.detail
        return fields


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
