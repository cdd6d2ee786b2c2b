"""StreamClock: TTFT, ITL, TPOT and E2E for one stream, from one monotonic clock.

Definitions (docs/architecture.md, "Words"; TPOT as vLLM defines it):

- TTFT: request arrival -> first content event written (and drained) to the
  client; upstream TTFT: upstream request sent -> first content chunk received,
  of which upstream headers: upstream request sent -> its response headers
  received (the connection, the request and the upstream's first answer).
- ITL: gap between successive content events written. One event may carry
  several tokens.
- TPOT: (last content time - first content time) / (output tokens - 1).
- E2E: request arrival -> last content event written.

All times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import statistics
import time
from array import array


class StreamClock:
    """Timestamps of one stream. Cheap per event: a subtraction and an append."""

    __slots__ = (
        "arrival",
        "content_events",
        "first_received",
        "first_written",
        "gaps",
        "last_written",
        "upstream_headers",
        "upstream_sent",
    )

    def __init__(self, arrival: float | None = None) -> None:
        self.arrival = time.perf_counter() if arrival is None else arrival
        self.upstream_sent: float | None = None
        self.upstream_headers: float | None = None
        self.first_received: float | None = None
        self.first_written: float | None = None
        self.last_written: float | None = None
        self.content_events = 0
        self.gaps = array("d")

    def mark_upstream_sent(self) -> None:
        """An upstream attempt starts (each retry or fallback again)."""
        self.upstream_sent = time.perf_counter()
        self.upstream_headers = None

    def mark_upstream_headers(self) -> None:
        """The attempt's response headers arrived (a 2xx: the stream is open)."""
        self.upstream_headers = time.perf_counter()

    def content_received(self) -> None:
        """A content chunk arrived from upstream (only the first is timed)."""
        if self.first_received is None:
            self.first_received = time.perf_counter()

    def content_written(self, now: float) -> float | None:
        """Record a content event written at ``now``; returns the ITL gap, if any."""
        self.content_events += 1
        last = self.last_written
        self.last_written = now
        if last is None:
            self.first_written = now
            return None
        gap = now - last
        self.gaps.append(gap)
        return gap

    @property
    def ttft(self) -> float | None:
        """Arrival -> first content written, seconds."""
        return None if self.first_written is None else self.first_written - self.arrival

    @property
    def upstream_ttft(self) -> float | None:
        """Upstream request sent -> first content received, seconds."""
        if self.first_received is None or self.upstream_sent is None:
            return None
        return self.first_received - self.upstream_sent

    @property
    def upstream_headers_s(self) -> float | None:
        """Upstream request sent -> its response headers, seconds."""
        if self.upstream_headers is None or self.upstream_sent is None:
            return None
        return self.upstream_headers - self.upstream_sent

    @property
    def e2e(self) -> float | None:
        """Arrival -> last content written, seconds."""
        return None if self.last_written is None else self.last_written - self.arrival

    def tpot(self, output_tokens: int) -> float | None:
        """vLLM's TPOT in seconds; None with fewer than two tokens."""
        if output_tokens < 2 or self.first_written is None or self.last_written is None:
            return None
        return (self.last_written - self.first_written) / (output_tokens - 1)

    def itl_percentiles(self) -> tuple[float, float, float] | None:
        """(p50, p95, p99) of this stream's ITL gaps, seconds; None if under 2 gaps."""
        if len(self.gaps) < 2:
            return None
        q = statistics.quantiles(self.gaps, n=100, method="inclusive")
        return q[49], q[94], q[98]
