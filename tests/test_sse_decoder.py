"""The upstream SSE decoder against the WHATWG event-stream rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UpstreamProtocolError
from gateway.providers.sse_decoder import SSEDecoder, SSEEvent


def decode_all(*pieces: bytes, max_line: int = 1 << 20) -> list[SSEEvent]:
    decoder = SSEDecoder(max_line)
    out: list[SSEEvent] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    return out


WIRE = (
    b": a comment\n"
    b"event: message_start\n"
    b'data: {"a":1}\n'
    b"\n"
    b"data: line one\n"
    b"data:line two\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"unknown: field\n"
    b"\n"
    b"data\n"
    b"\n"
    b"event: ignored-without-data\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent(b'{"a":1}', "message_start"),
    SSEEvent(b"line one\nline two", None, "7"),
    SSEEvent(b"", None),
    SSEEvent(b"[DONE]", None),
]


def test_fields_comments_and_multiline_data() -> None:
    assert decode_all(WIRE) == EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_at_every_split(ending: bytes) -> None:
    wire = WIRE.replace(b"\n", ending)
    for cut in range(len(wire) + 1):
        assert decode_all(wire[:cut], wire[cut:]) == EXPECTED, cut


def test_byte_by_byte_with_bom() -> None:
    wire = b"\xef\xbb\xbf" + WIRE
    assert decode_all(*(wire[i : i + 1] for i in range(len(wire)))) == EXPECTED


def test_incomplete_event_at_end_is_not_dispatched() -> None:
    assert decode_all(b"data: complete\n\ndata: cut") == [SSEEvent(b"complete")]


def test_a_line_that_never_ends_is_a_protocol_error() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"x" * 100)


def test_an_event_that_never_ends_is_a_protocol_error() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(100):
            decoder.feed(b"data: " + b"y" * 50 + b"\n")


def test_non_utf8_event_name_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        decode_all(b"event: \xff\xfe\ndata: x\n\n")


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)
_EVENTS = st.lists(
    st.tuples(st.lists(_TEXT, min_size=1, max_size=3), st.none() | _TEXT.filter(bool)),
    max_size=8,
)


@given(
    events=_EVENTS,
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_any_events_any_splits(
    events: list[tuple[list[str], str | None]], ending: bytes, cuts: list[int]
) -> None:
    wire = b""
    for lines, name in events:
        if name is not None:
            wire += b"event: " + name.encode() + ending
        for line in lines:
            wire += b"data: " + line.encode() + ending
        wire += ending
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    expected = [SSEEvent("\n".join(lines).encode(), name) for lines, name in events]
    assert decode_all(*pieces) == expected


@pytest.mark.parametrize("line", [b"data:\n", b"data: \n", b"data\n"])
def test_empty_data_lines_count_toward_the_event_bound(line: bytes) -> None:
    """Issue 20 row 3: empty ``data:`` lines added 0 bytes to the bound, so a
    flood of them grew the pending event without limit. Each line now costs
    its bytes on the wire: the bound is hit at the first line past it."""
    limit = 1024
    past = limit // len(line) + 1  # the first line whose bytes exceed the bound
    decoder = SSEDecoder(max_line_bytes=limit)
    for _ in range(past - 1):
        assert decoder.feed(line) == []
    with pytest.raises(UpstreamProtocolError, match="larger"):
        decoder.feed(line)
    with pytest.raises(UpstreamProtocolError):  # all in one read, too
        SSEDecoder(max_line_bytes=limit).feed(line * past)
    assert SSEDecoder(max_line_bytes=limit).feed(line * (past - 1) + b"\n") == [
        SSEEvent(b"\n" * (past - 2))
    ]


def test_work_per_read_does_not_grow_with_the_pending_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound used to re-sum every pending data line on every read:
    quadratic (n reads of one line: n*n/2 ``len`` calls). It is a running
    count now: a fixed number of ``len`` calls per line."""
    import gateway.providers.sse_decoder as module

    calls = 0

    def counting_len(obj: object) -> int:
        nonlocal calls
        calls += 1
        return len(obj)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "len", counting_len, raising=False)
    decoder = SSEDecoder()
    n = 2000
    for _ in range(n):
        decoder.feed(b"data: x\n")
    assert decoder.feed(b"\n") == [SSEEvent(b"\n".join([b"x"] * n))]
    assert calls <= 4 * n, calls


def test_a_long_line_in_small_pieces_is_joined_once() -> None:
    """The path that keeps an unfinished line as its pieces (joined once, when
    its end arrives; it used to be re-copied on every read) decodes it whole."""
    payload = b"y" * (512 << 10)
    wire = b"data: " + payload + b"\n\n"
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    for i in range(0, len(wire), 1024):
        out.extend(decoder.feed(wire[i : i + 1024]))
    assert out == [SSEEvent(payload)]


_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)


@given(
    events=st.lists(
        st.tuples(
            _TEXT,
            st.none() | _NAME,
            st.none() | _NAME,
            st.sampled_from(["data: ", "data:", "data:  "]),
            st.sampled_from(["event: ", "event:", "event:  "]),
        ),
        max_size=8,
    )
)
def test_one_event_per_read_decodes_as_byte_by_byte(
    events: list[tuple[str, str | None, str | None, str, str]],
) -> None:
    """Reads of exactly one whole event take the decoder's fast paths (a
    ``data:`` line; an ``event:`` line then a ``data:`` line): they give the
    events that the line-by-line rules give for the same bytes."""
    reads = [b": started\n"]
    for data, name, event_id, data_field, event_field in events:
        if event_id is not None:
            reads.append(b"id: " + event_id.encode() + b"\n")
        head = b"" if name is None else event_field.encode() + name.encode() + b"\n"
        reads.append(head + data_field.encode() + data.encode() + b"\n\n")
    wire = b"".join(reads)
    assert decode_all(*reads) == decode_all(*(wire[i : i + 1] for i in range(len(wire))))


def test_non_utf8_event_name_in_a_whole_event_read_is_a_protocol_error() -> None:
    decoder = SSEDecoder()
    decoder.feed(b": started\n")
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"event: \xff\xfe\ndata: x\n\n")
