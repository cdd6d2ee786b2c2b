"""gateway/routing's pure types, without a network: the latency estimate, the
breaker, the strategies, the queue and the router's leases (a fake clock)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.config import ConfigError, parse_settings
from gateway.errors import (
    DeploymentsBusy,
    DeploymentsUnavailable,
    UpstreamConnectError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from gateway.key_exposure import key_exposures
from gateway.routing.ewma import PeakEwma
from gateway.routing.health import Health, HealthState
from gateway.routing.queue import QueueFull, WaitQueue
from gateway.routing.router import Deployment, ModelRouter
from gateway.routing.settings import RoutingSettings
from gateway.routing.strategies import (
    SmoothWeighted,
    affinity,
    least_busy,
    power_of_two,
    rendezvous,
)

# -- PeakEwma -------------------------------------------------------------------


def test_peak_ewma_takes_a_peak_at_once_and_blends_lower_samples_by_time() -> None:
    e = PeakEwma(0.0, decay_s=10.0, now=0.0)
    assert e.observe(1.0, now=0.0) == 1.0  # the first measurement is a peak
    assert e.observe(3.0, now=0.1) == 3.0  # slower: taken at once
    low = e.observe(1.0, now=0.2)
    assert 2.9 < low < 3.0  # faster, right after: barely moves
    e2 = PeakEwma(0.0, decay_s=10.0, now=0.0)
    e2.observe(3.0, now=0.0)
    assert e2.observe(1.0, now=30.0) < 1.2  # faster, long after: mostly the new sample


def test_peak_ewma_decays_toward_zero_without_observations() -> None:
    e = PeakEwma(0.0, decay_s=1.0, now=0.0)
    e.observe(2.0, now=0.0)
    assert e.estimate(0.0) == 2.0
    assert e.estimate(1.0) == pytest.approx(2.0 / 2.718281828, rel=1e-6)
    assert e.estimate(10.0) < 0.001
    assert e.cost(open_streams=3, now=0.0) == 8.0  # estimate x (open + 1)


# -- Health ---------------------------------------------------------------------


def _health(**kw: Any) -> Health:
    conf = {"failures": 3, "window_s": 10.0, "cooldown_s": 5.0, "max_cooldown_s": 60.0, **kw}
    return Health(**conf)


def test_cooldown_after_n_failures_within_the_window_only() -> None:
    h = _health()
    assert not h.failed(0.0)
    assert not h.failed(1.0)
    assert not h.failed(20.0)  # the first two left the window
    assert not h.failed(21.0)
    assert h.failed(22.0)  # the third within 10 s
    assert h.state(22.0) is HealthState.COOLDOWN and not h.available(26.9)
    assert h.cooldown_left(22.0) == 5.0
    assert h.cooldowns == 1


def test_half_open_lets_one_trial_through_and_its_verdict_decides() -> None:
    h = _health(failures=1)
    assert h.failed(0.0)
    assert h.state(5.0) is HealthState.HALF_OPEN and h.available(5.0)
    assert h.sent(5.0)  # the trial
    assert not h.available(5.1)  # only one
    assert h.failed(5.2)  # the trial failed: a new cooldown
    assert h.cooldowns == 2 and not h.available(10.1) and h.available(10.2)
    assert h.sent(10.2)
    h.abandoned(True)  # the client left before the verdict
    assert h.available(10.3) and h.sent(10.3)
    h.succeeded()
    assert h.state(10.4) is HealthState.HEALTHY and not h.sent(10.4)


def test_retry_after_of_a_429_sets_the_cooldown_capped() -> None:
    h = _health()
    assert h.failed(0.0, retry_after_s=2.0)  # at once, whatever the count
    assert h.cooldown_left(0.0) == 2.0
    h2 = _health()
    assert h2.failed(0.0, retry_after_s=3600.0)
    assert h2.cooldown_left(0.0) == 60.0


def test_a_failure_of_a_request_sent_before_the_cooldown_does_not_extend_it() -> None:
    h = _health(failures=1)
    assert h.failed(0.0)
    assert not h.failed(1.0)
    assert h.cooldown_left(1.0) == 4.0 and h.cooldowns == 1


# -- strategies -----------------------------------------------------------------


@dataclass
class C:
    name: str
    open_streams: int = 0
    weight: float = 1.0
    latency: float = 0.0

    def cost(self, now: float) -> float:
        return self.latency * (self.open_streams + 1)


def test_least_busy_picks_the_fewest_open_and_breaks_ties_at_random() -> None:
    rng = random.Random(1)
    cands = [C("a", 2), C("b", 1), C("c", 1)]
    picks = Counter(least_busy(cands, rng).name for _ in range(200))
    assert set(picks) == {"b", "c"} and min(picks.values()) > 50


def test_power_of_two_prefers_the_lower_cost_and_never_the_worst_of_two() -> None:
    rng = random.Random(2)
    cands = [C("fast", latency=0.1), C("slow", latency=0.5, open_streams=0), C("mid", latency=0.2)]
    picks = Counter(power_of_two(cands, rng, 0.0).name for _ in range(300))
    assert "slow" not in picks  # it loses every pair it is drawn in
    assert picks["fast"] > picks["mid"]
    busy = [C("fast", latency=0.1, open_streams=9), C("slow", latency=0.5)]
    assert power_of_two(busy, rng, 0.0).name == "slow"  # 1.0 vs 0.5


def test_smooth_weighted_round_robin_interleaves_by_weight() -> None:
    swrr = SmoothWeighted()
    cands = [C("a", weight=5), C("b", weight=1), C("c", weight=1)]
    seq = [swrr.pick(cands).name for _ in range(7)]
    assert seq == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's documented sequence


def test_rendezvous_is_stable_and_moves_only_the_keys_of_a_removed_deployment() -> None:
    names = ["a", "b", "c"]
    homes = {f"s{i}": rendezvous(f"s{i}", names) for i in range(300)}
    assert set(homes.values()) == {"a", "b", "c"}
    assert homes == {k: rendezvous(k, names) for k in homes}
    moved = {k for k, v in homes.items() if rendezvous(k, ["a", "c"]) != v}
    assert moved == {k for k, v in homes.items() if v == "b"}


def test_affinity_falls_back_to_least_busy_when_home_is_unavailable() -> None:
    rng = random.Random(3)
    everyone = ["a", "b", "c"]
    home = rendezvous("session-1", everyone)
    cands = [C(n, open_streams=5 if n != "c" else 0) for n in everyone]
    assert affinity("session-1", everyone, cands, rng).name == home
    others = [c for c in cands if c.name != home]
    assert (
        affinity("session-1", everyone, others, rng).name
        == min(others, key=lambda c: c.open_streams).name
    )
    assert affinity(None, everyone, cands, rng).name == "c"


# -- WaitQueue ------------------------------------------------------------------


async def test_queue_is_fifo_bounded_and_timed() -> None:
    q = WaitQueue(2)
    order: list[int] = []

    async def waiter(i: int) -> None:
        await q.wait(5.0)
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
    while len(q) < 2:
        await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await q.wait(5.0)
    q.notify()
    q.notify()
    await asyncio.gather(*tasks)
    assert order == [0, 1] and len(q) == 0
    with pytest.raises(TimeoutError):
        await q.wait(0.01)
    assert len(q) == 0


async def test_a_woken_waiter_that_is_cancelled_passes_the_wake_up_on() -> None:
    q = WaitQueue(5)
    first = asyncio.create_task(q.wait(5.0))
    second = asyncio.create_task(q.wait(5.0))
    while len(q) < 2:
        await asyncio.sleep(0)
    q.notify()  # wakes first...
    first.cancel()  # ...which leaves before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)  # the wake-up was not lost
    assert len(q) == 0


# -- ModelRouter ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Provider:
    kind, dialect = "openai", "openai"


def _router(n: int = 2, clock: Clock | None = None, **conf: Any) -> ModelRouter:
    settings = RoutingSettings(**conf)
    clock = clock or Clock()
    deployments = [
        Deployment(
            name=f"d{i}",
            provider=_Provider(),  # type: ignore[arg-type]
            weight=1.0,
            max_streams=1,
            ewma=PeakEwma(0.0, 10.0, clock.now),
            health=Health(failures=1, window_s=10.0, cooldown_s=5.0, max_cooldown_s=60.0),
        )
        for i in range(n)
    ]
    return ModelRouter("m", deployments, settings, clock=clock, rng=random.Random(0))


async def test_router_leases_slots_queues_when_full_and_gives_them_back() -> None:
    router = _router(queue_size=1, queue_timeout_s=5.0)
    a = await router.acquire()
    b = await router.acquire()
    assert {a.deployment.name, b.deployment.name} == {"d0", "d1"}
    waiting = asyncio.create_task(router.acquire())
    while not len(router.queue):
        await asyncio.sleep(0)
    with pytest.raises(DeploymentsBusy) as full:
        await router.acquire()  # the queue holds one
    assert full.value.retry_after == 1.0 and full.value.status == 429
    a.release()
    a.release()  # idempotent
    c = await asyncio.wait_for(waiting, 1.0)
    assert c.deployment is a.deployment and a.deployment.open_streams == 1
    b.release()
    c.release()
    assert [d.open_streams for d in router.deployments] == [0, 0]


async def test_router_queue_times_out_and_a_cancelled_waiter_leaves_no_trace() -> None:
    router = _router(n=1, queue_size=4, queue_timeout_s=0.02)
    held = await router.acquire()
    with pytest.raises(DeploymentsBusy):
        await router.acquire()
    router.conf = RoutingSettings(queue_size=4, queue_timeout_s=5.0)
    waiting = asyncio.create_task(router.acquire())
    while not len(router.queue):
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(router.queue) == 0
    held.release()
    assert router.deployments[0].open_streams == 0


async def test_router_skips_cooling_and_tried_deployments() -> None:
    clock = Clock()
    router = _router(clock=clock)
    lease = await router.acquire(tried=frozenset({"d1"}))
    assert lease.deployment.name == "d0"
    lease.failed(UpstreamConnectError("down"))  # failures=1: cooldown
    assert lease.deployment.open_streams == 0
    again = await router.acquire()
    assert again.deployment.name == "d1"
    again.failed(UpstreamRateLimited("slow down", retry_after=2.0))
    with pytest.raises(DeploymentsUnavailable) as none:
        await router.acquire()
    assert none.value.retry_after == 2.0
    assert [c["deployment"] for c in router.cooling_down()] == ["d0", "d1"]
    clock.now += 2.0  # d1's Retry-After is over: half-open
    trial = await router.acquire()
    assert trial.deployment.name == "d1" and trial.trial
    trial.first_token()
    trial.release()
    assert [c["deployment"] for c in router.cooling_down()] == ["d0"]


async def test_a_refused_request_does_not_count_against_the_deployment() -> None:
    router = _router()
    lease = await router.acquire()
    lease.failed(UpstreamRejected("bad request"))
    assert router.cooling_down() == []


# -- config ---------------------------------------------------------------------


def test_deployments_are_model_entries_that_inherit_the_models_keys() -> None:
    settings = parse_settings(
        {"models": [{
            "name": "m", "provider": "openai", "upstream_model": "up", "api_key_env": "",
            "retries": 2, "fallbacks": ["s"], "routing": {"strategy": "latency"},
            "deployments": [
                {"name": "a", "base_url": "http://127.0.0.1:1/v1", "weight": 2},
                {"name": "b", "base_url": "http://127.0.0.1:2/v1", "max_concurrent_streams": 3},
                {"name": "c", "provider": "sim", "ttft_ms": 1},
            ],
        }, {"name": "s", "provider": "sim"}]}
    )  # fmt: skip
    m = settings.models[0]
    a, b, c = m.deployments
    assert m.routing.strategy == "latency" and m.routed == m.deployments
    assert (a.provider, a.target_model, a.weight, a.retries, a.fallbacks) == (
        "openai", "up", 2.0, 0, ()
    )  # fmt: skip
    assert getattr(b, "api_key_env", None) == "" and b.max_concurrent_streams == 3
    assert c.provider == "sim"
    assert settings.models[1].routed == ()


def test_deployment_mistakes_are_reported_with_their_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(
            {"models": [{"name": "m", "provider": "openai", "deployments": [
                {"name": "a", "base_urll": "http://x"},
                {"name": "b", "provider": "nope"},
            ]}]}
        )  # fmt: skip
    assert "models[0].deployments[0].base_urll: unknown key; did you mean 'base_url'?" in (
        err.value.errors
    )
    assert any(e.startswith("models[0].deployments[1].provider: unknown provider") for e in (
        err.value.errors
    ))  # fmt: skip
    with pytest.raises(ConfigError) as dup:
        parse_settings(
            {"models": [{"name": "m", "provider": "sim", "deployments": [
                {"name": "a"}, {"name": "a", "deployments": [{"name": "x"}]},
            ]}]}
        )  # fmt: skip
    assert dup.value.errors == (
        "models[0].deployments[1].name: duplicate deployment name 'a'",
        "models[0].deployments[1]: a deployment has no deployments or fallbacks of its own",
    )
    with pytest.raises(ConfigError) as wide:
        parse_settings(
            {"models": [{"name": "m", "provider": "sim", "deployments": [
                {"name": "a", "retries": 2, "stream": {"ttft_timeout_s": 5}},
            ]}]}
        )  # fmt: skip
    assert wide.value.errors == (
        "models[0].deployments[0].retries: applies to the model as a whole; set it there",
        "models[0].deployments[0].stream: applies to the model as a whole; set it there",
    )


async def test_a_failure_is_a_latency_peak_of_at_least_the_penalty() -> None:
    clock = Clock()
    router = _router(n=1, clock=clock, latency_failure_s=1.0)
    d = router.deployments[0]
    lease = await router.acquire()
    clock.now += 0.05
    lease.first_token()
    lease.release()
    assert d.ewma.estimate(clock.now) == pytest.approx(0.05)
    fast = await router.acquire()
    clock.now += 0.001
    fast.failed(UpstreamConnectError("refused"))  # a 1 ms failure is no fast answer
    assert d.ewma.estimate(clock.now) == 1.0
    d.health.succeeded()  # (this router cools down at the first failure)
    slow = await router.acquire()
    clock.now += 2.0
    slow.failed(UpstreamConnectError("timed out"))  # longer than the penalty: itself
    assert d.ewma.estimate(clock.now) == 2.0


def test_a_deployments_key_going_to_its_host_is_warned_about_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTING_TEST_KEY", "k")
    settings = parse_settings(
        {"models": [{"name": "m", "provider": "openai", "api_key_env": "", "deployments": [
            {"name": "own", "base_url": "http://127.0.0.1:1/v1"},
            {"name": "far", "base_url": "http://10.1.2.3/v1", "api_key_env": "ROUTING_TEST_KEY"},
        ]}]}
    )  # fmt: skip
    found = key_exposures(settings)
    assert [(f["event"], f["model"]) for f in found] == [("upstream_key_over_plain_http", "far")]
