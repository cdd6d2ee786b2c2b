"""What a keyed request goes through: admit, then settle (post-paid).

:meth:`Quotas.admit` asks the store whether the key has requests, tokens and
budget left in its windows and a free concurrency slot; if so the request is
counted and holds a slot (a lease) until :meth:`Quotas.settle` charges the
tokens the upstream reported and frees the slot. Because tokens are charged
after the response, a key can overrun its tokens per minute or budget by at
most what the requests it had in flight at that moment spend. A key's
``usd_budget`` is checked and charged the same way, in micro-dollars at the
models' prices (:mod:`gateway.cost`), beside its tokens.

A key without limits is never counted in the store (only in metrics). The
store failing (Redis down) answers 503 ``state_unavailable``, or with
``[state] fail_open`` lets the request through uncounted, with a warning and
``sluice_quota_state_errors_total``. No free pooled connection within
``[state] pool_timeout_s`` is not a failure of Redis: 503 ``state_busy``
(``fail_open`` or not), a ``state_pool_exhausted`` warning and
``sluice_state_pool_exhausted_total{store="quota"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge

from ..config_auth import ApiKeySettings, StateSettings
from ..cost.spend import NO_SPEND, Spend, micro_usd
from ..errors import KeyQuotaExhausted, KeyRateLimited, StateBusy, StateUnavailable
from ..metrics import Metrics
from .memory import MemoryQuotaStore
from .store import (
    NO_LIMIT,
    Decision,
    Limits,
    QuotaStore,
    StoreBusy,
    StoreUnavailable,
    Usage,
    Verdict,
    WindowClock,
    Windows,
)

log = structlog.get_logger("gateway.quota")


def limits_of(key: ApiKeySettings) -> Limits:
    def value(v: int | None) -> int:
        return NO_LIMIT if v is None else v

    return Limits(
        requests_per_minute=value(key.requests_per_minute),
        tokens_per_minute=value(key.tokens_per_minute),
        max_concurrent=value(key.max_concurrent_streams),
        token_budget=value(key.token_budget),
        usd_budget=NO_LIMIT if key.usd_budget is None else micro_usd(key.usd_budget),
    )


@dataclass(frozen=True, slots=True)
class QuotaView:
    """A key's limits and counters at one instant: what the rate-limit headers say."""

    limits: Limits
    usage: Usage
    windows: Windows


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted keyed request; hand it back to :meth:`Quotas.settle`."""

    key: ApiKeySettings
    lease: str | None
    counted: bool
    """False for a key without limits, or one let through by ``fail_open``."""
    view: QuotaView | None


class Quotas:
    """Per-key admission over a :class:`~gateway.quota.store.QuotaStore`."""

    def __init__(self, store: QuotaStore, state: StateSettings, metrics: Metrics) -> None:
        self.store = store
        self._state = state
        self._metrics = metrics
        self._live: dict[str, str] = {}
        """lease id -> key name, for the renewals."""
        self._lease_prefix = secrets.token_hex(6)
        self._lease_ids = itertools.count()
        self._gauges: dict[str, tuple[Gauge, int]] = {}
        """key name -> its budget-remaining gauge child (resolved once) and the
        period tokens it had spent as of its last request."""
        self._clock = WindowClock()
        self._releasing: set[asyncio.Future[Usage]] = set()
        """Lease releases in flight for admits whose caller left."""
        self.local = isinstance(store, MemoryQuotaStore)
        """Whether the store answers without suspending (nothing to shield)."""

    def _windows(self, key: ApiKeySettings) -> Windows:
        return self._clock.at(time.time(), key.budget_period)

    async def admit(self, key: ApiKeySettings, seen: Callable[[QuotaView], None]) -> Ticket:
        """Count a request of ``key``; ``seen`` gets the counters (for the
        rate-limit headers) whether or not it is admitted. Raises
        :class:`KeyRateLimited`, :class:`KeyQuotaExhausted` (429) or
        :class:`StateUnavailable` (503)."""
        if not key.limited:
            return Ticket(key, None, counted=False, view=None)
        limits = limits_of(key)
        w = self._windows(key)
        lease = (
            f"{self._lease_prefix}-{next(self._lease_ids)}"
            if limits.max_concurrent != NO_LIMIT
            else None
        )
        expiry_ms = w.now_ms + int(self._state.lease_ttl_s * 1000)
        try:
            decision = await self._decide(key, limits, w, lease, expiry_ms)
        except StoreBusy as err:
            raise self._store_busy(key, err) from None
        except StoreUnavailable as err:
            return self._store_failed(key, err)
        view = QuotaView(limits, decision.usage, w)
        seen(view)
        self._budget_gauge(key, limits, decision.usage)
        verdict = decision.verdict
        if verdict is Verdict.OK:
            if lease is not None:
                self._live[lease] = key.name
            return Ticket(key, lease, counted=True, view=view)
        self._metrics.key_rejections.labels(key.name, verdict.value).inc()
        raise _rejection(key, verdict, w)

    async def _decide(
        self, key: ApiKeySettings, limits: Limits, w: Windows, lease: str | None, expiry_ms: int
    ) -> Decision:
        """The store's decision. A caller cancelled while the store decides
        (a client that left during the Redis script) does not wait for it,
        but a lease the store granted meanwhile is given back as soon as the
        answer arrives: no slot stays counted until ``lease_ttl_s``."""
        admit = self.store.admit(key.name, limits, w, lease, expiry_ms)
        if self.local or lease is None:
            return await admit
        task = asyncio.ensure_future(admit)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._orphaned(t, key, lease))
            raise

    def _orphaned(self, task: asyncio.Future[Decision], key: ApiKeySettings, lease: str) -> None:
        """The decision of a cancelled admit: free the lease it may have granted."""
        if task.cancelled() or task.exception() is not None:
            return
        if task.result().verdict is not Verdict.OK:
            return
        release = asyncio.ensure_future(self.store.settle(key.name, self._windows(key), lease, 0))
        self._releasing.add(release)
        release.add_done_callback(self._released)

    def _released(self, task: asyncio.Future[Usage]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("quota_lease_release_failed", detail=repr(exc))

    def _store_busy(self, key: ApiKeySettings, err: StoreBusy) -> StateBusy:
        """The pool had no free connection in time: the gateway is busy, not
        Redis down; ``fail_open`` does not apply (a burst is exactly when the
        limits matter)."""
        self._metrics.state_pool_exhausted.labels("quota").inc()
        log.warning("state_pool_exhausted", key=key.name, store="quota", detail=str(err))
        return StateBusy(
            "The gateway is busy (all its connections to the quota store are in use); "
            "retry shortly",
            retry_after=1,
            detail=str(err),
        )

    def _store_failed(self, key: ApiKeySettings, err: StoreUnavailable) -> Ticket:
        detail = str(err)
        if self._state.fail_open:
            self._metrics.quota_state_errors.labels("allowed").inc()
            log.warning("quota_state_unavailable", key=key.name, action="allowed", detail=detail)
            return Ticket(key, None, counted=False, view=None)
        self._metrics.quota_state_errors.labels("rejected").inc()
        raise StateUnavailable(
            "The gateway cannot check this key's limits right now; retry shortly",
            retry_after=1,
            detail=detail,
        )

    async def settle(
        self,
        ticket: Ticket,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        estimated: bool = False,
        spend: Spend = NO_SPEND,
    ) -> None:
        """Charge what the request spent and free its slot (never raises).
        ``estimated``: Sluice estimated the counts (the upstream reported no
        usage); they are charged all the same, and also counted apart
        (``sluice_key_estimated_tokens_total``, the period's ``estimated_tokens``).
        ``spend``: its cost, charged to the period's USD counter."""
        key = ticket.key
        counters = [self._metrics.key_tokens]
        if estimated:
            counters.append(self._metrics.key_estimated_tokens)
        for tokens in counters:
            if input_tokens:
                tokens.labels(key.name, model, "input").inc(input_tokens)
            if output_tokens:
                tokens.labels(key.name, model, "output").inc(output_tokens)
        if not ticket.counted:
            return
        if ticket.lease is not None:
            self._live.pop(ticket.lease, None)
        try:
            spent = input_tokens + output_tokens
            usage = await self.store.settle(
                key.name,
                self._windows(key),
                ticket.lease,
                spent,
                spent if estimated else 0,
                spend.micro_usd,
                spend.micro_usd if spend.estimated else 0,
            )
        except StoreUnavailable as err:
            if isinstance(err, StoreBusy):
                self._metrics.state_pool_exhausted.labels("quota").inc()
            self._metrics.quota_state_errors.labels("uncharged").inc()
            log.warning(
                "quota_charge_lost",
                key=key.name,
                tokens=input_tokens + output_tokens,
                spend_usd=spend.usd,
                detail=str(err),
            )
            return
        self._budget_gauge(key, limits_of(key), usage)

    async def view(self, key: ApiKeySettings) -> QuotaView | None:
        """The key's counters now, read only; None for a key without limits.
        Raises :class:`~gateway.quota.store.StoreUnavailable`."""
        if not key.limited:
            return None
        w = self._windows(key)
        return QuotaView(limits_of(key), await self.store.usage(key.name, w), w)

    def _budget_gauge(self, key: ApiKeySettings, limits: Limits, usage: Usage) -> None:
        if limits.token_budget == NO_LIMIT:
            return
        known = self._gauges.get(key.name)
        if known is None:
            gauge = self._metrics.key_budget_remaining.labels(key.name)
            self._metrics.key_budget.labels(key.name).set(limits.token_budget)
        else:
            gauge = known[0]
        self._gauges[key.name] = (gauge, usage.period_tokens)
        gauge.set(max(0, limits.token_budget - usage.period_tokens))

    def reconfigure(self, keys: Iterable[ApiKeySettings]) -> None:
        """The keys were reloaded (SIGHUP): the per-key budget gauges follow
        the new config. A key whose ``token_budget`` changed gets the new
        budget and its remaining tokens recomputed from what it had spent as
        of its last request; a key removed, or one that no longer has a
        budget, loses both series."""
        by_name = {k.name: k for k in keys}
        for name, (gauge, spent) in list(self._gauges.items()):
            key = by_name.get(name)
            if key is None or key.token_budget is None:
                self.forget(name)
                continue
            self._metrics.key_budget.labels(name).set(key.token_budget)
            gauge.set(max(0, key.token_budget - spent))

    async def settle_shielded(
        self,
        ticket: Ticket,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        estimated: bool = False,
        spend: Spend = NO_SPEND,
    ) -> None:
        """:meth:`settle`, run to its end even if the caller is cancelled (a
        client that left) while Redis answers."""
        settle = self.settle(
            ticket, model, input_tokens, output_tokens, estimated=estimated, spend=spend
        )
        if self.local:
            await settle
        else:
            await asyncio.shield(settle)

    def forget(self, name: str) -> None:
        """A revoked key: drop its per-key gauges (counters keep their history)."""
        self._gauges.pop(name, None)
        for gauge in (self._metrics.key_budget_remaining, self._metrics.key_budget):
            with contextlib.suppress(KeyError):
                gauge.remove(name)

    async def keep_leases(self) -> None:
        """Renew the leases of this process's open requests every third of
        ``lease_ttl_s`` (runs until cancelled)."""
        ttl = self._state.lease_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            live = [(name, lease) for lease, name in self._live.items()]
            if not live:
                continue
            try:
                await self.store.renew(live, int((time.time() + ttl) * 1000))
            except StoreUnavailable as err:
                log.warning("quota_lease_renewal_failed", leases=len(live), detail=str(err))

    async def close(self) -> None:
        await self.store.close()


def _rejection(
    key: ApiKeySettings, verdict: Verdict, w: Windows
) -> KeyRateLimited | KeyQuotaExhausted:
    error: KeyRateLimited | KeyQuotaExhausted
    if verdict is Verdict.BUDGET:
        error = KeyQuotaExhausted(
            f"The key '{key.name}' has spent its token budget for this {key.budget_period} "
            f"({key.token_budget} tokens); it renews at the start of the next {key.budget_period} "
            "(UTC)",
            retry_after=math.ceil(w.period_ends - w.now),
        )
    elif verdict is Verdict.USD_BUDGET:
        error = KeyQuotaExhausted(
            f"The key '{key.name}' has spent its budget for this {key.budget_period} "
            f"(${key.usd_budget:.2f}); it renews at the start of the next {key.budget_period} "
            "(UTC)",
            retry_after=math.ceil(w.period_ends - w.now),
        )
    elif verdict is Verdict.CONCURRENCY:
        error = KeyRateLimited(
            f"The key '{key.name}' has {key.max_concurrent_streams} requests open, its limit",
            retry_after=1,
        )
    else:
        what = {
            Verdict.REQUESTS: f"{key.requests_per_minute} requests per minute",
            Verdict.TOKENS: f"{key.tokens_per_minute} tokens per minute",
        }[verdict]
        error = KeyRateLimited(
            f"The key '{key.name}' is over its limit of {what}",
            retry_after=max(1, math.ceil(w.minute_ends - w.now)),
        )
    return error
