"""loadtest/scenarios/real_model.py's verdicts: never ``met`` when a request failed."""

from __future__ import annotations

from loadtest.client.sse import StreamResult
from loadtest.scenarios.real_model import _verdict, failed


def test_a_failed_request_makes_the_verdict_missed() -> None:
    assert _verdict(0, 48, 1.0, 0.1, 10.0) == "met"
    assert _verdict(1, 48, 1.0, 0.1, 10.0) == "missed: 1 of 48 requests failed"
    assert _verdict(0, 48, None, 0.1, 10.0) == "missed: no figure"
    assert _verdict(0, 48, 11.0, 0.1, 10.0) == "missed"


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
