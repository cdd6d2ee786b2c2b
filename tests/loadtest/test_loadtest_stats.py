"""Stats: percentiles, frames lost, stalls, cancel latency matching, deltas."""

from __future__ import annotations

import asyncio
import math
import os
from array import array

from loadtest.client.driver import LoadSpec, PhaseRun, assign_profiles
from loadtest.client.profiles import Profile, Target
from loadtest.client.sampler import ProcessSampler
from loadtest.client.sse import StreamResult
from loadtest.measure.phase import cpu_figures
from loadtest.mock.scenario import MockScenario, overrides_from_model
from loadtest.report.stats import cancel_latency, compare, nearest_rank, pct, percentile, summarize

PROFILES = (Profile("normal", "normal", 3.0), Profile("gone", "disconnect_mid", 1.0))


def _result(
    cid: str, profile: str, tokens: int, gaps: list[float], disconnected: float | None = None
) -> StreamResult:
    r = StreamResult(cid, profile, "openai", 10, 0.01, start=100.0)
    r.first_token_at, r.tokens, r.gaps = 100.05, tokens, array("d", gaps)
    r.last_token_at = 100.05 + sum(gaps)
    r.done = disconnected is None and tokens == 10
    r.disconnected_at = disconnected
    return r


def test_pct_in_ms() -> None:
    p = pct([0.001, 0.002, 0.003])
    assert p is not None
    assert p["p50"] == 2.0
    assert p["max"] == 3.0
    assert pct([]) is None


def test_assign_profiles_by_weight() -> None:
    got = assign_profiles(PROFILES, 8)
    assert [p.name for p in got].count("normal") == 6
    assert len(got) == 8


def test_summary_frames_lost_and_stalls() -> None:
    run = PhaseRun(
        Target("t", "h", 1, "m"), LoadSpec(PROFILES, MockScenario()), started=0.0, ended=2.0
    )
    run.results = [
        _result("a", "normal", 10, [0.01] * 9),
        _result("b", "normal", 8, [0.01] * 6 + [0.05]),  # lost 2, one stall
        _result("c", "gone", 3, [0.01] * 2, disconnected=101.0),
    ]
    s = summarize(run)
    assert s["frames_expected"] == 20
    assert s["frames_received"] == 18
    assert s["frames_lost"] == 2
    assert s["normal"]["stalls"] == 1
    assert s["profiles"]["gone"]["disconnected_on_purpose"] == 1
    assert s["events"] == 21


def test_cancel_latency_matches_by_client_id() -> None:
    results = [
        _result("a", "gone", 3, [0.01] * 2, disconnected=101.0),
        _result("b", "gone", 3, [0.01] * 2, disconnected=101.0),
        _result("c", "gone", 3, [0.01] * 2, disconnected=101.0),
    ]
    records = [
        {"client_id": "a", "peer_closed_mono": 101.004},
        {"client_id": "b", "peer_closed_mono": None, "completed": False, "ended_mono": None},
    ]
    c = cancel_latency(results, records)
    assert c["latency_ms"] is not None
    assert abs(c["latency_ms"]["p50"] - 4.0) < 1e-6
    assert c["not_closed"] == 1
    assert c["unmatched"] == 1


def test_compare_deltas() -> None:
    direct = {
        "normal": {
            "ttft_ms": {"p50": 50.0, "p99": 60.0},
            "itl_ms": {"p50": 20.0, "p99": 21.0},
            "e2e_ms": None,
        },
        "events_per_s": 100.0,
    }
    gateway = {
        "normal": {
            "ttft_ms": {"p50": 50.5, "p99": 61.0},
            "itl_ms": {"p50": 20.0, "p99": 22.0},
            "e2e_ms": None,
        },
        "events_per_s": 99.0,
    }
    c = compare(direct, gateway)
    assert c["added_ttft_ms"] == {"p50": 0.5, "p99": 1.0}
    assert c["added_itl_ms"]["p99"] == 1.0
    assert c["throughput_ratio"] == 0.99


def test_model_name_overrides() -> None:
    assert overrides_from_model("mock-itl20-ttft50-n100-fclose_mid-at3") == {
        "itl_ms": "20",
        "ttft_ms": "50",
        "tokens": "100",
        "fault": "close_mid",
        "fault_at": "3",
    }
    assert overrides_from_model("gpt-4o") == {}
    sc = MockScenario().with_overrides(overrides_from_model("mock-n7-j2"))
    assert (sc.tokens, sc.jitter_ms) == (7, 2.0)


def test_rss_trend_of_a_short_phase_skips_a_quarter_not_five_seconds() -> None:
    from types import SimpleNamespace

    from loadtest.report.stats import rss_trend

    samples = [SimpleNamespace(t=0.5 * i, rss_bytes=2**20 * (100 + i)) for i in range(8)]  # 3.5 s
    trend = rss_trend(samples)
    assert trend is not None
    assert abs(trend["slope_kib_per_s"] - 2048.0) < 1e-6  # 1 MiB per 0.5 s
    assert trend["first_mib"] == 102.0  # warm-up 0.875 s: from t=1.0 s
    assert rss_trend(samples[:2]) is None


def test_one_percentile_and_nearest_rank_for_every_command() -> None:
    """The shared percentile helpers: seconds in, ms out (None when empty);
    nearest rank keeps an ``inf`` (a request that never got its first token)."""
    assert percentile([], 99) is None
    assert percentile([0.001, 0.002, 0.003], 50) == 2.0
    assert percentile([1.0, 3.0], 50, scale=1.0) == 2.0
    assert math.isnan(nearest_rank([], 0.5))
    assert nearest_rank([3.0, 1.0, 2.0], 0.5) == 2.0
    assert nearest_rank([1.0, math.inf], 0.99) == math.inf


async def test_a_phase_shorter_than_the_sampling_interval_still_has_cpu_figures() -> None:
    """The sampler takes a last sample at stop: a 20-request phase (bench
    --quick's TTFT section) had one sample and every CPU figure n/a."""
    sampler = ProcessSampler(os.getpid(), None, interval_s=60.0)
    sampler.start()
    await asyncio.sleep(0)  # the first sample
    sum(range(200_000))  # some CPU between the two
    samples = await sampler.stop()
    assert len(samples) == 2 and samples[1].t > samples[0].t
    assert cpu_figures(samples, 100, "me")["cpu_util"] is not None
    assert len(await sampler.stop()) == 2  # a second stop adds nothing
