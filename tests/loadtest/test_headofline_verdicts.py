"""The head-of-line verdict (loadtest/report/headofline.py) is never "met"
when requests failed: a prompt that was refused stressed nothing, a small
stream that failed measured no gap (a burst of 503s gave a quiet loop and a
"met" before); a miss the floor shares is the machine's."""

from __future__ import annotations

from typing import Any

from loadtest.report.headofline import verdicts as _verdicts


def _phase(mb: float, gap: float, prompts: int = 3, **errors: Any) -> dict[str, Any]:
    return {"relay": "sluice", "prompt_mb": mb, "gap_p99_ms": gap, "prompts": prompts,
            "prompt_bytes": 1 << 20, "relay_cpu_s": 1.0,
            "prompt_errors": errors.get("prompt_errors", {}),
            "stream_errors": errors.get("stream_errors", 0)}  # fmt: skip


def _verdict(*phases: dict[str, Any]) -> str:
    result = {"phases": list(phases)}
    _verdicts(result)
    return str(result["phases"][-1]["verdict"])


def _floor(mb: float, gap: float) -> dict[str, Any]:
    return {**_phase(mb, gap), "relay": "floor"}


def test_a_miss_the_floor_shares_is_called_the_machines() -> None:
    def why(floor_gap: float) -> str:
        result = {"phases": [_phase(0, 50.0), _floor(0, 50.0), _phase(32.0, 70.0),
                             _floor(32.0, floor_gap)]}  # fmt: skip
        _verdicts(result)
        return str(result["phases"][2]["check"]["verdict"])

    assert why(65.0).endswith("the floor missed too (15.0 ms added): the machine's miss)")
    assert why(52.0).endswith("the floor met it (2.0 ms added): Sluice's miss)")


def test_served_prompts_under_the_target_are_met() -> None:
    assert _verdict(_phase(0, 50.0), _phase(32.0, 51.0)) == "met"
    assert _verdict(_phase(0, 50.0), _phase(32.0, 70.0)) == (
        "missed (20.0 ms over 10 ms, 3 prompts served)"  # no floor phase: no "whose"
    )


def test_failed_requests_are_never_met() -> None:
    refused = _phase(32.0, 50.0, prompts=0, prompt_errors={"503": 9})
    assert _verdict(_phase(0, 50.0), refused).startswith("missed (9 requests failed")
    some = _phase(32.0, 50.0, prompt_errors={"ClientOSError": 1})
    assert _verdict(_phase(0, 50.0), some).startswith("missed (1 requests failed")
    streams = _phase(32.0, 50.0, stream_errors=4)
    assert _verdict(_phase(0, 50.0), streams).startswith("missed (4 requests failed")
    idle_failed = _phase(0, 50.0, stream_errors=2)
    assert _verdict(idle_failed, _phase(32.0, 50.0)).startswith("missed (2 requests failed")
