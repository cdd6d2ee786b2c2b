"""One request's spend, and where it is recorded.

:class:`Spend` is whole micro-dollars (USD x 10^6): the unit the key's USD
budget is counted in (an integer in Redis, so replicas add up exactly). A
request's exact cost in pico-dollars is rounded half up to the micro-dollar
once; the rounding moves a key's total by at most half a micro-dollar per
request.

Recorded for every request that asked a model (streamed or not, completed
or cut short: the tokens the client received before leaving are spent), by
:meth:`gateway.api.hold.Hold.release`:

- ``sluice_spend_usd_total{key,model}`` (``key="(anonymous)"`` for a
  request without a key) and ``sluice_estimated_spend_usd_total{key,model}``, the part priced
  from token counts Sluice estimated (:mod:`gateway.usage_estimate`);
- ``spend_usd`` and ``spend_estimated`` on the request's summary log line;
- the key's period spend in the quota store (its ``usd_budget``).
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import Counter

from ..metrics import Metrics

PICO_PER_MICRO = 1_000_000
MICRO_PER_USD = 1_000_000


class Spend(NamedTuple):
    """What one request cost."""

    micro_usd: int
    estimated: bool = False
    """Priced from token counts Sluice estimated (the upstream sent no usage)."""

    @classmethod
    def of_pico(cls, pico_usd: int, *, estimated: bool = False) -> Spend:
        return cls((pico_usd + PICO_PER_MICRO // 2) // PICO_PER_MICRO, estimated)

    @property
    def usd(self) -> float:
        return self.micro_usd / MICRO_PER_USD

    def log_fields(self) -> dict[str, object]:
        """``spend_usd`` (dollars, to the micro-dollar) and ``spend_estimated``."""
        return {"spend_usd": self.usd, "spend_estimated": self.estimated}


NO_SPEND = Spend(0)

ANONYMOUS = "(anonymous)"
"""The ``key`` label of requests without a key: outside the key-name alphabet
(``[A-Za-z0-9._:-]``), so no configured key can be mistaken for it (an empty
label would be an absent one to Prometheus, and no dashboard legend)."""


def micro_usd(usd: float) -> int:
    """Dollars (a config value) as whole micro-dollars."""
    return round(usd * MICRO_PER_USD)


class SpendMeter:
    """Counts spends in ``sluice_spend_usd_total`` (and the estimated part),
    the label children resolved once per (key, model): ``labels()`` costs a
    few µs a call, and keys and models are bounded by the config."""

    __slots__ = ("_children", "_metrics")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str], tuple[Counter, Counter]] = {}

    def record(self, key: str, model: str, spend: Spend) -> None:
        children = self._children.get((key, model))
        if children is None:
            m = self._metrics
            children = self._children[key, model] = (
                m.spend.labels(key, model),
                m.estimated_spend.labels(key, model),
            )
        usd = spend.micro_usd / MICRO_PER_USD
        children[0].inc(usd)
        if spend.estimated:
            children[1].inc(usd)
