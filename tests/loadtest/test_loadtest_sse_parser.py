"""The load generator's SSE parser: any split of the byte stream gives the same result."""

from __future__ import annotations

import random

import pytest

from loadtest.client.sse import SseParser, StreamResult
from loadtest.mock.frames import FrameSet, token_text


def _response(dialect: str, n: int, fault: bool = False) -> bytes:
    frames = FrameSet(dialect, "id-1", "m", 3, include_usage=True)  # type: ignore[arg-type]
    body = frames.head() + b"".join(frames.token(token_text(i, 0)) for i in range(n))
    body += frames.error() if fault else frames.tail(n)
    chunked = b"".join(
        b"%x\r\n%b\r\n" % (len(body[i : i + 50]), body[i : i + 50]) for i in range(0, len(body), 50)
    )
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + chunked + b"0\r\n\r\n"


def _parse(raw: bytes, splits: list[int], dialect: str) -> StreamResult:
    res = StreamResult("c", "normal", dialect, 0, 0.0, 0.0)
    parser = SseParser(res, dialect)
    pos = 0
    for t, cut in enumerate([*splits, len(raw)]):
        parser.feed(raw[pos:cut], float(t))
        pos = cut
    return res


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize("seed", range(5))
def test_any_split_gives_same_counts(dialect: str, seed: int) -> None:
    raw = _response(dialect, 17)
    rng = random.Random(seed)
    splits = sorted(rng.sample(range(1, len(raw)), 40))
    res = _parse(raw, splits, dialect)
    assert res.status == 200
    assert res.tokens == 17
    assert res.done is True
    assert res.error is None
    assert len(res.gaps) == 16


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_byte_by_byte_and_error_event(dialect: str) -> None:
    raw = _response(dialect, 4, fault=True)
    res = _parse(raw, list(range(1, len(raw))), dialect)
    assert res.tokens == 4
    assert res.done is False
    assert res.error in {"server_error", "overloaded_error"}


def test_http_error_status() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
    res = _parse(raw, [], "openai")
    assert res.status == 503
    assert res.tokens == 0
