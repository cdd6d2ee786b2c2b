"""ModelRouter: a model's deployments, what is known of each, and leases.

:meth:`ModelRouter.acquire` chooses a deployment for one attempt (among those
not cooling down and not tried yet by the request, by the model's
:class:`~gateway.routing.strategies.Strategy`) and returns a :class:`Lease`:
one stream slot on it, held until :meth:`Lease.release` (idempotent). When
every available deployment is at its ``max_concurrent_streams`` the request
waits in the model's :class:`~gateway.routing.queue.WaitQueue`.

Errors: :class:`~gateway.errors.DeploymentsUnavailable` (every deployment
left is cooling down), :class:`~gateway.errors.DeploymentsBusy` (queue full,
or no slot within ``queue_timeout_s``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import (
    DeploymentsBusy,
    DeploymentsUnavailable,
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
)
from ..metrics import DeploymentChildren, DeploymentFamilies, QueueChildren
from ..providers.base import Provider
from .ewma import PeakEwma
from .health import Health, HealthState
from .queue import QueueFull, WaitQueue
from .settings import RoutingSettings
from .strategies import SmoothWeighted, Strategy, affinity, least_busy, power_of_two

BUSY_RETRY_AFTER_S = 1.0
"""``Retry-After`` of a 429 ``deployments_busy``: a stream slot frees often."""


@dataclass(eq=False, slots=True)
class Deployment:
    """One deployment and what this process knows of it."""

    name: str
    provider: Provider
    weight: float
    max_streams: int | None
    ewma: PeakEwma
    health: Health
    children: DeploymentChildren | None = None
    open_streams: int = 0

    def cost(self, now: float) -> float:
        return self.ewma.cost(self.open_streams, now)

    @property
    def full(self) -> bool:
        return self.max_streams is not None and self.open_streams >= self.max_streams


class Lease:
    """One stream slot on a deployment, from the request sent to the stream's
    end. Report the attempt's verdict once (:meth:`first_token` or
    :meth:`failed`), then :meth:`release` (any number of times)."""

    __slots__ = ("_router", "_settled", "deployment", "released", "sent_at", "trial")

    def __init__(self, router: ModelRouter, deployment: Deployment, now: float, trial: bool):
        self._router = router
        self.deployment = deployment
        self.sent_at = now
        self.trial = trial
        """This attempt is the deployment's half-open trial."""
        self._settled = False
        self.released = False

    def first_token(self) -> float:
        """The upstream's first chunk arrived; returns the TTFT (seconds)."""
        now = self._router.clock()
        ttft = now - self.sent_at
        d = self.deployment
        estimate = d.ewma.observe(ttft, now)
        was = d.health.state(now)
        d.health.succeeded()
        self._settled = True
        if d.children is not None:
            d.children.upstream_ttft.observe(ttft)
            d.children.latency_estimate.set(estimate)
            if was is not HealthState.HEALTHY:
                d.children.cooling_down.set(0)
        return ttft

    def failed(self, err: GatewayError) -> None:
        """The attempt failed before its first token; gives the slot back.
        Connect errors, 5xx, 429 and TTFT timeouts count toward a cooldown
        (a 429's ``Retry-After`` sets one); a request the upstream refused
        (4xx) or could not parse does not."""
        now = self._router.clock()
        d = self.deployment
        self._settled = True
        router = self._router
        if router.families is not None:
            router.families.failures.labels(
                router.model, d.name, err.code or "upstream_error"
            ).inc()
        if isinstance(err, UpstreamError) and err.retryable:
            retry_after = err.retry_after if isinstance(err, UpstreamRateLimited) else None
            # A failure is a peak of at least latency_failure_s: a fast 503
            # must not make the deployment look fast.
            penalty = max(now - self.sent_at, router.conf.latency_failure_s)
            if penalty > d.ewma.estimate(now):
                estimate = d.ewma.observe(penalty, now)
                if d.children is not None:
                    d.children.latency_estimate.set(estimate)
            if d.health.failed(now, retry_after) and d.children is not None:
                d.children.cooldowns.inc()
                d.children.cooling_down.set(1)
        elif self.trial:
            d.health.abandoned(True)
        self.release()

    def release(self) -> None:
        """Give the slot back (idempotent); a trial with no verdict is freed."""
        if self.released:
            return
        self.released = True
        d = self.deployment
        if not self._settled:
            d.health.abandoned(self.trial)
        d.open_streams -= 1
        if d.children is not None:
            d.children.streams_open.dec()
        self._router.queue.notify()


class ModelRouter:
    """The deployments of one model (see the module docstring)."""

    def __init__(
        self,
        model: str,
        deployments: Sequence[Deployment],
        conf: RoutingSettings,
        families: DeploymentFamilies | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.model = model
        self.deployments = tuple(deployments)
        self.names = tuple(d.name for d in self.deployments)
        self.conf = conf
        self.strategy = Strategy(conf.strategy)
        self.families = families
        self.clock = clock
        self.rng = rng or random.Random()
        self.queue = WaitQueue(conf.queue_size)
        self._weighted = SmoothWeighted()
        self._queue_children: QueueChildren | None = (
            families.queue(model) if families is not None else None
        )

    async def acquire(self, key: str | None = None, tried: frozenset[str] = frozenset()) -> Lease:
        """A slot on a deployment chosen for this attempt (``tried``: names
        this request already failed on; ``key``: the affinity key). Waits in
        the queue when all are full. Raises ``DeploymentsUnavailable`` or
        ``DeploymentsBusy``."""
        waited_from: float | None = None
        woken = False
        while True:
            now = self.clock()
            open_ = [d for d in self.deployments if d.name not in tried and d.health.available(now)]
            if not open_:
                self._waited(waited_from if woken else None, now)
                raise self._unavailable(tried, now)
            if woken or not len(self.queue):
                free = [d for d in open_ if not d.full]
                if free:
                    self._waited(waited_from, now)
                    return self._lease(self._choose(free, key, now), now)
            if waited_from is None:
                waited_from = now
            woken = await self._wait(waited_from, now)

    def _choose(self, free: list[Deployment], key: str | None, now: float) -> Deployment:
        strategy = self.strategy
        if strategy is Strategy.LATENCY:
            return power_of_two(free, self.rng, now)
        if strategy is Strategy.WEIGHTED:
            return self._weighted.pick(free)
        if strategy is Strategy.AFFINITY:
            return affinity(key, self.names, free, self.rng)
        return least_busy(free, self.rng)

    def _lease(self, d: Deployment, now: float) -> Lease:
        trial = d.health.sent(now)
        d.open_streams += 1
        if d.children is not None:
            d.children.requests.inc()
            d.children.streams_open.inc()
        return Lease(self, d, now, trial)

    async def _wait(self, waited_from: float, now: float) -> bool:
        """Wait for a slot; True when woken. Raises ``DeploymentsBusy``."""
        left = self.conf.queue_timeout_s - (now - waited_from)
        children = self._queue_children
        reason: str | None = None
        if children is not None:
            children.waiting.inc()
        try:
            if left <= 0:
                raise TimeoutError
            await self.queue.wait(left)
            return True
        except QueueFull:
            reason = "queue_full"
        except TimeoutError:
            reason = "queue_timeout"
        finally:
            if children is not None:
                children.waiting.dec()
        if reason == "queue_timeout":
            self._waited(waited_from, self.clock())
        if self.families is not None:
            self.families.queue_rejections.labels(self.model, reason).inc()
        raise DeploymentsBusy(
            f"Every deployment of the model '{self.model}' is at its limit of open streams",
            retry_after=BUSY_RETRY_AFTER_S,
            detail=f"{reason} after {self.clock() - waited_from:.3f} s",
        )

    def _waited(self, waited_from: float | None, now: float) -> None:
        if waited_from is not None and self._queue_children is not None:
            self._queue_children.wait_seconds.observe(now - waited_from)

    def _unavailable(self, tried: frozenset[str], now: float) -> DeploymentsUnavailable:
        cooling = [d.health.cooldown_left(now) for d in self.deployments if d.name not in tried]
        left = min((c for c in cooling if c > 0), default=None)
        return DeploymentsUnavailable(
            f"No deployment of the model '{self.model}' is available",
            retry_after=left,
            detail=f"tried {sorted(tried)}; cooling down: "
            f"{[d.name for d in self.deployments if d.health.cooldown_left(now) > 0]}",
        )

    def cooling_down(self) -> list[dict[str, object]]:
        """Deployments in cooldown or waiting for their trial (for ``/readyz``)."""
        now = self.clock()
        out: list[dict[str, object]] = []
        for d in self.deployments:
            state = d.health.state(now)
            if state is not HealthState.HEALTHY:
                out.append(
                    {"model": self.model, "deployment": d.name, "state": state.value,
                     "seconds_left": round(d.health.cooldown_left(now), 3)}
                )  # fmt: skip
        return out
