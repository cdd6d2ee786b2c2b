"""The quota store protocol and the values it trades in.

Windows are fixed: a UTC minute (``epoch_seconds // 60``) for requests and
tokens per minute, a calendar UTC day or month for the token and USD budgets (micro-dollars).
Concurrency slots are *leases*: an id with an expiry (wall-clock ms), renewed
while the request runs and removed when it ends, so a slot held by a process
that died frees itself when its lease expires.

A store counts every key it is asked about; it knows nothing of secrets, only
key *names*.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from ..errors import StoreUnavailable as StoreUnavailable  # the one class, re-exported

NO_LIMIT = -1


class Verdict(StrEnum):
    """An admission's answer; otherwise the limit that turned it away."""

    OK = "ok"
    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"
    BUDGET = "budget"
    USD_BUDGET = "usd_budget"


@dataclass(frozen=True, slots=True)
class Limits:
    """One key's limits; :data:`NO_LIMIT` where none is set."""

    requests_per_minute: int = NO_LIMIT
    tokens_per_minute: int = NO_LIMIT
    max_concurrent: int = NO_LIMIT
    token_budget: int = NO_LIMIT
    usd_budget: int = NO_LIMIT
    """Micro-dollars per budget period (:mod:`gateway.cost`)."""


@dataclass(frozen=True, slots=True)
class Windows:
    """The windows an instant falls in (see the module docstring)."""

    now: float
    """Wall clock, epoch seconds."""
    minute: int
    minute_ends: float
    period: str
    """``2026-11-21`` (day) or ``2026-11`` (month)."""
    period_ends: float

    @classmethod
    def at(cls, now: float, budget_period: str) -> Windows:
        minute = int(now // 60)
        t = datetime.fromtimestamp(now, UTC)
        if budget_period == "month":
            period = f"{t.year:04d}-{t.month:02d}"
            days = calendar.monthrange(t.year, t.month)[1]
            start = datetime(t.year, t.month, 1, tzinfo=UTC).timestamp()
            ends = start + days * 86400
        else:
            period = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
            ends = datetime(t.year, t.month, t.day, tzinfo=UTC).timestamp() + 86400
        return cls(now=now, minute=minute, minute_ends=(minute + 1) * 60.0, period=period,
                   period_ends=ends)  # fmt: skip

    @property
    def now_ms(self) -> int:
        return int(self.now * 1000)

    @property
    def budget_ttl_s(self) -> int:
        """How long a period's counter is kept: the period, and a day to read it after."""
        return int(self.period_ends - self.now) + 86400


class WindowClock:
    """:meth:`Windows.at`, with the calendar work done once per minute."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, Windows] = {}

    def at(self, now: float, budget_period: str) -> Windows:
        last = self._cache.get(budget_period)
        if last is None or int(now // 60) != last.minute:
            last = self._cache[budget_period] = Windows.at(now, budget_period)
        return Windows(now, last.minute, last.minute_ends, last.period, last.period_ends)


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's counters: this minute, this period, open requests now."""

    requests: int = 0
    tokens: int = 0
    period_tokens: int = 0
    open_requests: int = 0
    period_estimated_tokens: int = 0
    """The part of ``period_tokens`` Sluice estimated (the upstream reported
    no usage); read by :meth:`QuotaStore.usage`, 0 in other answers."""
    period_usd: int = 0
    """Micro-dollars spent this period (:mod:`gateway.cost`)."""
    period_estimated_usd: int = 0
    """The part of ``period_usd`` priced from estimated tokens; read by
    :meth:`QuotaStore.usage`, 0 in other answers."""


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    usage: Usage
    """After the admission (the request counted, when admitted)."""


class StoreBusy(StoreUnavailable):
    """The store is up but this process could not get a connection to it in
    time (``[state] pool_timeout_s``: the pool is exhausted)."""


class QuotaStore(Protocol):
    """Where the counters live. Every method is atomic per key; a store that
    cannot answer raises :class:`StoreUnavailable` (:class:`StoreBusy` when it
    could not even be asked in time)."""

    async def admit(
        self, key: str, limits: Limits, w: Windows, lease: str | None, lease_expiry_ms: int
    ) -> Decision:
        """Check every limit; if all pass, count one request and hold ``lease``
        (when given) until ``lease_expiry_ms``. Tokens are checked, not charged."""
        ...

    async def settle(
        self,
        key: str,
        w: Windows,
        lease: str | None,
        tokens: int,
        estimated: int = 0,
        usd: int = 0,
        estimated_usd: int = 0,
    ) -> Usage:
        """Charge ``tokens`` to this minute and this period (``estimated`` of
        them estimated, also counted apart for the period) and ``usd``
        micro-dollars to this period (``estimated_usd`` of them estimated);
        drop ``lease``."""
        ...

    async def renew(self, leases: list[tuple[str, str]], expiry_ms: int) -> None:
        """Push the expiry of live ``(key, lease)`` pairs (those still held)."""
        ...

    async def usage(self, key: str, w: Windows) -> Usage:
        """The counters, read only."""
        ...

    async def close(self) -> None: ...
