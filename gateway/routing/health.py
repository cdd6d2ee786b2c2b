"""A deployment's health: failures in a window, cooldown, one half-open trial.

A circuit breaker in three states (:class:`HealthState`):

- ``healthy``: serves. Each failure (connect error, 5xx, 429, no first token
  in time) is remembered for ``window_s``; the ``failures``-th one within the
  window starts a cooldown of ``cooldown_s``. A 429's ``Retry-After`` starts
  one at once, as long as the upstream asked (capped at ``max_cooldown_s``).
- ``cooldown``: chosen by nobody until the cooldown ends.
- ``half_open``: the cooldown is over; exactly one request (the trial) may
  go. Its first token closes the breaker (``healthy``, failures forgotten);
  its failure starts a new cooldown; a trial given up without an answer (the
  client left) lets the next request be the trial.

A pure value: time comes in as an argument (seconds, a monotonic clock). The
state lives in one process; each replica of a fleet learns the same thing
from its own traffic.
"""

from __future__ import annotations

import enum
from collections import deque


class HealthState(enum.Enum):
    HEALTHY = "healthy"
    COOLDOWN = "cooldown"
    HALF_OPEN = "half_open"


class Health:
    """One deployment's breaker (see the module docstring)."""

    __slots__ = ("_cooldown_s", "_failures", "_max_cooldown_s", "_need", "_trial", "_until",
                 "_window_s", "cooldowns")  # fmt: skip

    def __init__(
        self, *, failures: int, window_s: float, cooldown_s: float, max_cooldown_s: float
    ) -> None:
        self._need = failures
        self._window_s = window_s
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._failures: deque[float] = deque()
        self._until: float | None = None
        """When the current cooldown ends (None: healthy)."""
        self._trial = False
        """A half-open trial is in flight."""
        self.cooldowns = 0
        """Cooldowns started so far."""

    def state(self, now: float) -> HealthState:
        if self._until is None:
            return HealthState.HEALTHY
        return HealthState.COOLDOWN if now < self._until else HealthState.HALF_OPEN

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (healthy, or the trial is free)."""
        if self._until is None:
            return True
        return now >= self._until and not self._trial

    def cooldown_left(self, now: float) -> float:
        """Seconds until the cooldown ends (0 when not cooling down)."""
        return 0.0 if self._until is None else max(0.0, self._until - now)

    def sent(self, now: float) -> bool:
        """A request goes to this deployment; True when it is the half-open trial."""
        if self._until is not None and now >= self._until:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        """A first token arrived: the breaker closes."""
        self._until = None
        self._trial = False
        self._failures.clear()

    def abandoned(self, trial: bool) -> None:
        """A request ended with no verdict (cancelled before its first token)."""
        if trial:
            self._trial = False

    def failed(self, now: float, retry_after_s: float | None = None) -> bool:
        """A failure before the first token; True when it starts a cooldown."""
        if self._until is not None:
            if now < self._until and retry_after_s is None:
                return False  # a request sent before the cooldown began
            self._trial = False
            return self._cool(now, retry_after_s)
        if retry_after_s is not None:
            return self._cool(now, retry_after_s)
        failures = self._failures
        failures.append(now)
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        if len(failures) >= self._need:
            return self._cool(now, None)
        return False

    def _cool(self, now: float, retry_after_s: float | None) -> bool:
        span = self._cooldown_s if retry_after_s is None else retry_after_s
        until = now + min(max(span, 0.0), self._max_cooldown_s)
        started = self._until is None or now >= self._until
        self._until = until if self._until is None else max(until, self._until)
        self._failures.clear()
        if started:
            self.cooldowns += 1
        return started
