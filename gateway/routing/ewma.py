"""Peak EWMA: a peak-sensitive, time-decayed moving average of upstream TTFT.

The load estimate of Finagle's and Linkerd's balancers, as tower implements
it (``tower/src/load/peak_ewma.rs``): an observation above the estimate
replaces it at once (the *peak*: a deployment that slows down is seen slow
on its first slow answer); one below it is blended in with a weight that
grows with the time since the last observation (``1 - exp(-elapsed / decay_s)``),
so the estimate follows the recent past, not the last N samples. Reading it
decays it toward zero by the same law, so a deployment nobody chose for a
while looks cheap again, gets a request, and is re-measured: a slow one that
recovered wins its traffic back. The *cost* a balancer compares is the
estimate times (streams open + 1).

A pure value: time comes in as an argument (seconds, a monotonic clock).
"""

from __future__ import annotations

import math


class PeakEwma:
    """One deployment's latency estimate (seconds). Not thread-safe (one loop)."""

    __slots__ = ("_at", "_decay_s", "_estimate")

    def __init__(self, default_s: float, decay_s: float, now: float) -> None:
        """``default_s``: the estimate before any observation (tower's
        ``default_rtt``); ``decay_s``: the time constant (seconds, > 0)."""
        if decay_s <= 0:
            raise ValueError("decay_s must be > 0")
        self._estimate = default_s
        self._decay_s = decay_s
        self._at = now

    def observe(self, sample_s: float, now: float) -> float:
        """Add one measured latency (seconds) at ``now``; returns the new estimate."""
        decay = self._decay(now)
        decayed = self._estimate * decay
        if sample_s > decayed:
            self._estimate = sample_s  # the peak: taken at once
        else:
            self._estimate = decayed + sample_s * (1.0 - decay)
        self._at = now
        return self._estimate

    def estimate(self, now: float) -> float:
        """The estimate at ``now``: decayed toward 0 since the last observation
        (reading changes nothing)."""
        return self._estimate * self._decay(now)

    def cost(self, open_streams: int, now: float) -> float:
        """What p2c compares: estimate x (streams open + 1), as tower's ``load()``."""
        return self.estimate(now) * (open_streams + 1)

    def _decay(self, now: float) -> float:
        return math.exp(-max(0.0, now - self._at) / self._decay_s)
