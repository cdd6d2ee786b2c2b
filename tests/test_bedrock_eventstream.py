"""The event-stream decoder (gateway/providers/eventstream.py) and the
Converse event translation (gateway/providers/bedrock_stream.py) against
hostile bytes: every split point of a valid stream decodes the same; bad
CRCs, truncated and oversized messages, and arbitrary bytes or values raise
typed errors (UpstreamProtocolError or the exception's GatewayError), never
anything else; a message over the bound raises before it is buffered."""

from __future__ import annotations

import contextlib
import itertools
import struct
from binascii import crc32
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamRateLimited
from gateway.providers.base import UpstreamChunk
from gateway.providers.bedrock_stream import ConverseEvents
from gateway.providers.eventstream import EventMessage, EventStreamDecoder
from tests.fake_bedrock import (
    event,
    exception,
    frame,
    text_events,
    tool_events,
)

STREAM = b"".join(tool_events("get_weather", '{"city": "São Paulo"}', 4))
EXPECTED = list(EventStreamDecoder().feed(STREAM))


def _decode(pieces: list[bytes], limit: int = 1 << 20) -> list[EventMessage]:
    decoder = EventStreamDecoder(limit)
    out = [m for piece in pieces for m in decoder.feed(piece)]
    decoder.end()
    return out


def test_every_split_point_decodes_the_same() -> None:
    assert [m.type for m in EXPECTED][:3] == ["messageStart", "contentBlockDelta",
                                              "contentBlockStop"]  # fmt: skip
    for i in range(len(STREAM) + 1):
        assert _decode([STREAM[:i], STREAM[i:]]) == EXPECTED, i


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_splits_decode_the_same(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert _decode([STREAM[a:b] for a, b in itertools.pairwise(points)]) == EXPECTED


def test_byte_at_a_time() -> None:
    assert _decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_a_flipped_byte_anywhere_is_a_typed_error() -> None:
    one = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    for i in range(len(one)):
        bad = bytearray(one)
        bad[i] ^= 0x5A
        with pytest.raises(UpstreamProtocolError):
            _decode([bytes(bad)])  # a CRC, the length, or a truncation


def test_truncated_at_every_point_is_an_error_at_the_end() -> None:
    one = event("messageStop", {"stopReason": "end_turn"})
    for i in range(1, len(one)):
        decoder = EventStreamDecoder()
        assert list(decoder.feed(one[:i])) == []
        with pytest.raises(UpstreamProtocolError, match="ended in the middle"):
            decoder.end()


def test_an_oversized_prelude_raises_before_the_message_is_buffered() -> None:
    decoder = EventStreamDecoder(4096)
    prelude = struct.pack("!II", 50 << 20, 0)
    with pytest.raises(UpstreamProtocolError, match="too large"):
        list(decoder.feed(prelude + struct.pack("!I", 0)))  # 12 bytes: raised at once
    big = frame({":message-type": "event", ":event-type": "x"}, b"x" * 5000)
    with pytest.raises(UpstreamProtocolError, match="too large"):
        list(EventStreamDecoder(4096).feed(big))  # whole in one read: still refused
    assert next(EventStreamDecoder(8192).feed(big)).payload == b"x" * 5000
    # A length too small to be a message is refused as well.
    with pytest.raises(UpstreamProtocolError, match="invalid length"):
        list(EventStreamDecoder().feed(struct.pack("!III", 8, 0, 0)))


def test_messages_before_a_bad_one_come_first() -> None:
    good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}})
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    too_long = struct.pack("!III", 1 << 30, 0, 0)
    for bad in (bytes(bad_crc), too_long):
        got: list[EventMessage] = []
        with pytest.raises(UpstreamProtocolError):
            for message in EventStreamDecoder(4096).feed(good + bad):
                got.append(message)
        assert [m.payload for m in got] == [m.payload for m in EventStreamDecoder().feed(good)]


def test_an_incomplete_message_is_held_as_pieces() -> None:
    big = frame({":message-type": "event", ":event-type": "x"}, b"y" * 100_000)
    decoder = EventStreamDecoder()
    got: list[EventMessage] = []
    for i in range(0, len(big), 1000):
        got += decoder.feed(big[i : i + 1000])
        assert decoder.pending == (0 if got else i + 1000)
    assert [m.payload for m in got] == [b"y" * 100_000]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(UpstreamProtocolError):
        _decode([data, data])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=20)), max_size=4),
       st.binary(max_size=30))  # fmt: skip
def test_arbitrary_headers_raise_only_typed_errors(
    headers: list[tuple[str, bytes]], payload: bytes
) -> None:
    raw = b""
    for name, value in headers:
        key = name.encode()[:255]
        raw += struct.pack("!B", len(key)) + key + value  # any type byte, any value
    total = 12 + len(raw) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw))
    prelude += struct.pack("!I", crc32(prelude))
    body = prelude + raw + payload
    body += struct.pack("!I", crc32(body))
    with contextlib.suppress(UpstreamProtocolError):
        _decode([body])


# -- Converse events -> Anthropic events --------------------------------------


def _translate(data: bytes) -> tuple[list[UpstreamChunk], ConverseEvents]:
    events = ConverseEvents("m")
    out: list[UpstreamChunk] = []
    for message in EventStreamDecoder().feed(data):
        events.chunks(message, out)
    return out, events


def test_translation_of_a_whole_stream() -> None:
    out, events = _translate(b"".join(text_events(["Hel", "lo"], "guardrail_intervened")))
    assert [c.event for c in out] == ["message_start", "content_block_start",
                                      "content_block_delta", "content_block_delta",
                                      "content_block_stop", "message_delta",
                                      "message_stop"]  # fmt: skip
    assert all(orjson.loads(c.data) == c.payload for c in out)
    assert out[5].payload["delta"]["stop_reason"] == "refusal"
    assert out[5].payload["usage"] == {"input_tokens": 11, "output_tokens": 2}
    assert events.finished


def test_an_exception_before_content_raises_before_any_chunk() -> None:
    events = ConverseEvents("m")
    out: list[UpstreamChunk] = []
    data = text_events(["x"])[0] + exception("throttlingException")
    messages = list(EventStreamDecoder().feed(data))
    events.chunks(messages[0], out)
    assert out == []  # message_start is held back: a retry is still possible
    with pytest.raises(UpstreamRateLimited):
        events.chunks(messages[1], out)


def test_an_error_message_says_its_code_and_message() -> None:
    error = frame({":message-type": "error", ":error-code": "InternalFailure",
                   ":error-message": "It broke"}, b"")  # fmt: skip
    with pytest.raises(GatewayError, match=r"InternalFailure\): It broke"):
        _translate(error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
EVENT_TYPES = ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop",
               "messageStop", "metadata", "unknownEvent")  # fmt: skip
FIELDS = {
    "contentBlockIndex": st.integers(-1, 3) | json_values,
    "delta": st.fixed_dictionaries({}, optional={"text": json_values, "toolUse": json_values,
                                                 "reasoningContent": json_values}) | json_values,
    "start": st.fixed_dictionaries({}, optional={"toolUse": json_values}) | json_values,
    "stopReason": json_values,
    "usage": json_values,
}  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(EVENT_TYPES),
                          st.fixed_dictionaries({}, optional=FIELDS)), max_size=8))  # fmt: skip
def test_hostile_values_raise_only_gateway_errors(events: list[tuple[str, dict[str, Any]]]) -> None:
    data = b"".join(event(name, payload) for name, payload in events)
    try:
        out, _ = _translate(data)
    except GatewayError:
        return
    for chunk in out:  # what the encoders get is well-formed
        assert isinstance(chunk.payload, dict) and chunk.event == chunk.payload["type"]
        if chunk.event == "content_block_delta":
            delta = chunk.payload["delta"]
            assert all(isinstance(v, str) for v in delta.values())
