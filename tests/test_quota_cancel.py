"""A client that leaves while its key's admission is in flight (issue 19 row J).

Redis runs a script it has received even when the client that sent it stops
waiting: the lease is granted, and the answer is lost. The store here does
the same (it grants at once, then answers after a latency), so the test
shows what a cancelled ``Quotas.admit`` leaves behind, deterministically.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config_auth import ApiKeySettings, StateSettings
from gateway.metrics import Metrics
from gateway.quota.limiter import Quotas
from gateway.quota.memory import MemoryQuotaStore
from gateway.quota.store import Decision, Limits, Windows


class SlowAnswers(MemoryQuotaStore):
    """Grants at once, answers ``latency_s`` later (the answer in flight)."""

    def __init__(self, latency_s: float) -> None:
        super().__init__()
        self.latency_s = latency_s
        self.granted = asyncio.Event()

    async def admit(
        self, key: str, limits: Limits, w: Windows, lease: str | None, lease_expiry_ms: int
    ) -> Decision:
        decision = await super().admit(key, limits, w, lease, lease_expiry_ms)
        self.granted.set()
        await asyncio.sleep(self.latency_s)
        return decision


async def test_a_cancelled_admit_gives_its_lease_back(metrics: Metrics) -> None:
    store = SlowAnswers(latency_s=0.2)
    quotas = Quotas(store, StateSettings(), metrics)
    quotas.local = False  # it suspends, as Redis does
    key = ApiKeySettings(name="team", sha256="0" * 64, max_concurrent_streams=1)

    def seen(view: Any) -> None:
        return None

    admit = asyncio.ensure_future(quotas.admit(key, seen))
    await store.granted.wait()
    admit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admit
    async with asyncio.timeout(5):
        while True:
            view = await quotas.view(key)
            assert view is not None
            if view.usage.open_requests == 0:
                break
            await asyncio.sleep(0.02)
    store.latency_s = 0
    ticket = await quotas.admit(key, seen)  # the one slot is free again
    await quotas.settle(ticket, "m", 0, 0)
