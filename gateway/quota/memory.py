"""Quota counters in this process (no ``[state] redis_url``): exact for one
process, lost on restart."""

from __future__ import annotations

from dataclasses import dataclass, field

from .store import NO_LIMIT, Decision, Limits, Usage, Verdict, Windows


@dataclass(slots=True)
class _Counters:
    minute: int = -1
    requests: int = 0
    tokens: int = 0
    period: str = ""
    period_tokens: int = 0
    period_estimated: int = 0
    period_usd: int = 0
    period_estimated_usd: int = 0
    leases: dict[str, int] = field(default_factory=dict)

    def roll(self, w: Windows) -> None:
        if self.minute != w.minute:
            self.minute, self.requests, self.tokens = w.minute, 0, 0
        if self.period != w.period:
            self.period, self.period_tokens, self.period_estimated = w.period, 0, 0
            self.period_usd = self.period_estimated_usd = 0
        now_ms = w.now_ms
        expired = [lease for lease, expiry in self.leases.items() if expiry <= now_ms]
        for lease in expired:
            del self.leases[lease]

    def usage(self) -> Usage:
        return Usage(
            self.requests,
            self.tokens,
            self.period_tokens,
            len(self.leases),
            self.period_estimated,
            self.period_usd,
            self.period_estimated_usd,
        )


class MemoryQuotaStore:
    """:class:`~gateway.quota.store.QuotaStore` in a dict; never fails."""

    def __init__(self) -> None:
        self._keys: dict[str, _Counters] = {}

    def _counters(self, key: str, w: Windows) -> _Counters:
        counters = self._keys.get(key)
        if counters is None:
            counters = self._keys[key] = _Counters()
        counters.roll(w)
        return counters

    async def admit(
        self, key: str, limits: Limits, w: Windows, lease: str | None, lease_expiry_ms: int
    ) -> Decision:
        c = self._counters(key, w)
        verdict = Verdict.OK
        if limits.token_budget != NO_LIMIT and c.period_tokens >= limits.token_budget:
            verdict = Verdict.BUDGET
        elif limits.usd_budget != NO_LIMIT and c.period_usd >= limits.usd_budget:
            verdict = Verdict.USD_BUDGET
        elif limits.requests_per_minute != NO_LIMIT and c.requests >= limits.requests_per_minute:
            verdict = Verdict.REQUESTS
        elif limits.tokens_per_minute != NO_LIMIT and c.tokens >= limits.tokens_per_minute:
            verdict = Verdict.TOKENS
        elif limits.max_concurrent != NO_LIMIT and len(c.leases) >= limits.max_concurrent:
            verdict = Verdict.CONCURRENCY
        if verdict is Verdict.OK:
            c.requests += 1
            if lease is not None:
                c.leases[lease] = lease_expiry_ms
        return Decision(verdict, c.usage())

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
        c = self._counters(key, w)
        c.period_usd += usd
        c.period_estimated_usd += estimated_usd
        c.tokens += tokens
        c.period_tokens += tokens
        c.period_estimated += estimated
        if lease is not None:
            c.leases.pop(lease, None)
        return c.usage()

    async def renew(self, leases: list[tuple[str, str]], expiry_ms: int) -> None:
        for key, lease in leases:
            held = self._keys.get(key)
            if held is not None and lease in held.leases:
                held.leases[lease] = expiry_ms

    async def usage(self, key: str, w: Windows) -> Usage:
        return self._counters(key, w).usage()

    async def close(self) -> None:
        return None
