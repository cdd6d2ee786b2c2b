"""loadtest/scenarios/real_model.py's verdicts: never ``met`` when a request failed."""

from __future__ import annotations

from loadtest.client.sse import StreamResult
from loadtest.scenarios.real_model import _checks, failed, render


def _verdicts(failures: int, ttft: float | None, itl: float | None, bound: float) -> list[str]:
    return [c.verdict() for c in _checks(4, failures, ttft, itl, bound)]


def test_a_failed_request_makes_the_verdict_missed() -> None:
    assert _verdicts(0, 1.0, 0.1, 10.0) == ["met", "met"]
    assert _verdicts(1, 1.0, 0.1, 10.0) == [
        "missed (1 requests failed; +1.00 ms within 10.0 ms)",
        "missed (1 requests failed; +0.10 ms within 2.0 ms)",
    ]
    assert _verdicts(0, None, 0.1, 10.0)[0] == "missed (no figure)"
    assert _verdicts(0, 11.0, 0.1, 10.0)[0] == "missed (+11.00 ms over 10.0 ms)"


def test_the_report_shows_every_check_and_explains_verdicts() -> None:
    checks = [c.as_json() for c in _checks(1, 2, 1.0, 0.1, 10.0)]
    side = {"requests": 24, "failed": 1, "tokens_mean": 30.0}
    added = {k: {"p50": 1.0, "p90": 2.0} for k in ("ttft_ms", "itl_ms")}
    run = {"concurrency": 1, "direct": side, "gateway": side, "added": added, "checks": checks}
    text = render({"meta": {"llama_cpp": "0.3", "max_tokens": 32}, "runs": [run]})
    assert "| added TTFT p50, concurrency 1 | <= 10.0 ms | +1.00 ms | missed (2 requests" in text
    assert "Verdicts: **met** when" in text


def test_what_counts_as_failed() -> None:
    def result(**fields: object) -> StreamResult:
        r = StreamResult("c", "direct", "openai", 32, 0.0, 0.0, status=200, done=True, tokens=3)
        for name, value in fields.items():
            setattr(r, name, value)
        return r

    assert not failed(result())
    assert failed(result(status=503))
    assert failed(result(error="truncated"))
    assert failed(result(done=False))
    assert failed(result(tokens=0))
