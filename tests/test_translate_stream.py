"""Table-driven tests of the stream encoders over event sequences written from
the two published stream formats:

- Anthropic: https://docs.anthropic.com/en/api/messages-streaming
- OpenAI: https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.dialects.anthropic import AnthropicPassthrough
from gateway.dialects.frames import Frame, StreamEncoder, Usage
from gateway.dialects.translate_stream import AnthropicFromOpenAI, OpenAIFromAnthropic
from gateway.errors import GatewayError, UpstreamOverloaded, UpstreamProtocolError
from gateway.providers.base import UpstreamChunk
from tests.fake_anthropic import (
    MESSAGE_STOP,
    block_start,
    block_stop,
    delta,
    message_delta,
    message_start,
    parse_sse,
    text_block,
    text_events,
    thinking_block,
    tool_block,
    tool_events,
)
from tests.fakes import chunk

ARGS = {"query": "größte Städte 🌆", "limit": 10, "filters": {"country": ["DE", "AT"]}}
UNICODE_PIECES = ["na", "ï", "ve 👩\u200d", "👩\u200d👧 日", "本語 cafe", "\u0301!"]


def anthropic_chunks(events: list[dict[str, Any]]) -> list[UpstreamChunk]:
    """What the Anthropic provider yields: data bytes, payload, event name (no pings)."""
    return [
        UpstreamChunk(data=orjson.dumps(e), payload=e, event=e["type"])
        for e in events
        if e["type"] != "ping"
    ]


def openai_chunks(payloads: list[dict[str, Any]]) -> list[UpstreamChunk]:
    return [UpstreamChunk(data=orjson.dumps(p), payload=p) for p in payloads]


def run(encoder: StreamEncoder, chunks: list[UpstreamChunk]) -> tuple[list[Frame], bytes]:
    frames = [encoder.encode(c) for c in chunks]
    return frames, b"".join(f.data for f in frames) + encoder.finish()


# -- Anthropic upstream -> OpenAI client ------------------------------------


def openai_view(body: bytes) -> dict[str, Any]:
    """Assemble an OpenAI stream the way a client does."""
    events = [data for _, data in parse_sse(body.decode())]
    assert events[-1] == "[DONE]"
    out: dict[str, Any] = {"content": "", "reasoning": "", "calls": {}, "finish": None,
                           "usage": None, "roles": []}  # fmt: skip
    for e in events[:-1]:
        assert e["object"] == "chat.completion.chunk" and e["model"] == "claude"
        if e.get("usage"):
            out["usage"] = e["usage"]
        for choice in e["choices"]:
            d = choice["delta"]
            out["roles"] += [d["role"]] if "role" in d else []
            out["content"] += d.get("content") or ""
            out["reasoning"] += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or ():
                call = out["calls"].setdefault(tc["index"], {"id": None, "name": None, "args": ""})
                call["id"] = tc.get("id") or call["id"]
                call["name"] = (tc.get("function") or {}).get("name") or call["name"]
                call["args"] += (tc.get("function") or {}).get("arguments") or ""
            out["finish"] = choice["finish_reason"] or out["finish"]
    return out


def two_tools() -> list[dict[str, Any]]:
    return [message_start(), tool_block(0, "a", "toolu_a"), delta(0, partial_json='{"x":'),
            delta(0, partial_json=" 1}"), block_stop(0), tool_block(1, "b", "toolu_b"),
            delta(1, partial_json='{"y": [2]}'), block_stop(1), message_delta("tool_use"),
            MESSAGE_STOP]  # fmt: skip


def thinking_then_text() -> list[dict[str, Any]]:
    return [message_start(), thinking_block(0), delta(0, thinking="Hmm… "),
            delta(0, thinking="🤔"), delta(0, signature="c2ln"), block_stop(0),
            text_block(1), delta(1, text="Done."), block_stop(1), message_delta(),
            MESSAGE_STOP]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(text_events(["Hel", "lo"]), {"content": "Hello", "finish": "stop"},
                     id="text"),
        pytest.param(text_events(UNICODE_PIECES), {"content": "".join(UNICODE_PIECES)},
                     id="unicode-split-across-deltas"),
        pytest.param(tool_events("search", orjson.dumps(ARGS).decode(), 60, "toolu_s"),
                     {"content": "Let me check.", "finish": "tool_calls",
                      "calls": {0: {"id": "toolu_s", "name": "search",
                                    "args": orjson.dumps(ARGS).decode()}}},
                     id="tool-args-in-60-deltas"),
        pytest.param(two_tools(),
                     {"calls": {0: {"id": "toolu_a", "name": "a", "args": '{"x": 1}'},
                                1: {"id": "toolu_b", "name": "b", "args": '{"y": [2]}'}},
                      "finish": "tool_calls"},
                     id="two-tool-calls"),
        pytest.param(thinking_then_text(), {"reasoning": "Hmm… 🤔", "content": "Done."},
                     id="thinking"),
    ],
)  # fmt: skip
def test_anthropic_to_openai(events: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    encoder = OpenAIFromAnthropic(model="claude", include_usage=False)
    _, body = run(encoder, anthropic_chunks(events))
    view = openai_view(body)
    assert view["roles"] == ["assistant"]
    assert view["usage"] is None
    for key, value in expected.items():
        assert view[key] == value, key
    for call in view["calls"].values():
        assert orjson.loads(call["args"])  # every assembled argument string is JSON


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
     ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("pause_turn", "stop")],
)  # fmt: skip
def test_stop_reason_to_finish_reason(stop_reason: str, finish: str) -> None:
    encoder = OpenAIFromAnthropic(model="claude", include_usage=False)
    _, body = run(encoder, anthropic_chunks(text_events(["x"], stop_reason)))
    assert openai_view(body)["finish"] == finish


def test_usage_chunk_only_when_asked_and_frames_report_usage() -> None:
    events = text_events(["a", "b", "c"])
    events[0]["message"]["usage"]["cache_read_input_tokens"] = 4
    for include in (False, True):
        encoder = OpenAIFromAnthropic(model="claude", include_usage=include)
        frames, body = run(encoder, anthropic_chunks(events))
        usage = openai_view(body)["usage"]
        if include:
            assert usage == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18,
                             "prompt_tokens_details": {"cached_tokens": 4}}  # fmt: skip
        else:
            assert usage is None
        reported = [f.usage for f in frames if f.usage is not None]
        assert reported[-1] == Usage(input_tokens=15, output_tokens=3, cached_input_tokens=4)
        assert [f.content for f in frames].count(True) == 3


def test_anthropic_error_becomes_openai_error_event_without_done() -> None:
    encoder = OpenAIFromAnthropic(model="claude", include_usage=True)
    frames = [encoder.encode(c) for c in anthropic_chunks(text_events(["partial"])[:4])]
    body = b"".join(f.data for f in frames) + encoder.error(UpstreamOverloaded("Overloaded"))
    events = [data for _, data in parse_sse(body.decode())]
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "overloaded_error"
    assert set(events[-1]["error"]) == {"message", "type", "param", "code"}


# -- OpenAI-dialect upstream -> Anthropic client ----------------------------


def check_anthropic_grammar(events: list[tuple[str | None, Any]]) -> None:
    """The published event order: message_start, then for each block (indexes
    0, 1, ...) start / deltas / stop, then message_delta and message_stop."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name
    open_index: int | None = None
    next_index = 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            pytest.fail(f"unexpected event {name}")
    assert open_index is None


def anthropic_view(body: bytes) -> dict[str, Any]:
    """Accumulate an Anthropic stream the way the SDK does."""
    events = parse_sse(body.decode())
    check_anthropic_grammar(events)
    message = events[0][1]["message"]
    blocks: list[dict[str, Any]] = []
    for name, data in events:
        if name == "content_block_start":
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, d = blocks[data["index"]], data["delta"]
            if d["type"] == "text_delta":
                block["text"] += d["text"]
            elif d["type"] == "thinking_delta":
                block["thinking"] += d["thinking"]
            elif d["type"] == "input_json_delta":
                block["json"] = block.get("json", "") + d["partial_json"]
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"].update(data["usage"])
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = orjson.loads(block.pop("json", "") or "{}")
    message["content"] = blocks
    return message


def tool_call(index: int, *, call_id: str | None = None, name: str | None = None,
              args: str = "") -> dict[str, Any]:  # fmt: skip
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk(tool_calls=[call])


USAGE = {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}
USAGE_CHUNK = {**chunk(), "choices": [], "usage": USAGE}


def split_args(index: int, text: str, size: int) -> list[dict[str, Any]]:
    return [tool_call(index, args=text[i : i + size]) for i in range(0, len(text), size)]


ARGS_JSON = orjson.dumps(ARGS).decode()


@pytest.mark.parametrize(
    ("payloads", "content", "stop_reason"),
    [
        pytest.param([chunk("", role="assistant"), chunk("Hel"), chunk("lo"),
                      chunk(finish="stop"), USAGE_CHUNK],
                     [{"type": "text", "text": "Hello"}], "end_turn", id="text"),
        pytest.param([chunk("", role="assistant"), *(chunk(p) for p in UNICODE_PIECES),
                      chunk(finish="stop")],
                     [{"type": "text", "text": "".join(UNICODE_PIECES)}], "end_turn",
                     id="unicode-split-across-chunks"),
        pytest.param([chunk(reasoning_content="Think… "), chunk(reasoning_content="🤔"),
                      chunk("42"), chunk(finish="stop")],
                     [{"type": "thinking", "thinking": "Think… 🤔", "signature": ""},
                      {"type": "text", "text": "42"}], "end_turn", id="reasoning-to-thinking"),
        pytest.param([chunk("On it."), tool_call(0, call_id="call_1", name="search"),
                      *split_args(0, ARGS_JSON, 2), chunk(finish="tool_calls")],
                     [{"type": "text", "text": "On it."},
                      {"type": "tool_use", "id": "call_1", "name": "search", "input": ARGS}],
                     "tool_use", id="tool-args-in-many-chunks"),
        pytest.param([tool_call(0, call_id="call_a", name="a", args='{"x"'),
                      tool_call(0, args=": 1}"),
                      tool_call(1, call_id="call_b", name="b"), tool_call(1, args="{}"),
                      chunk(finish="tool_calls")],
                     [{"type": "tool_use", "id": "call_a", "name": "a", "input": {"x": 1}},
                      {"type": "tool_use", "id": "call_b", "name": "b", "input": {}}],
                     "tool_use", id="parallel-tool-calls"),
        pytest.param([chunk("cut"), chunk(finish="length")],
                     [{"type": "text", "text": "cut"}], "max_tokens", id="length"),
        pytest.param([chunk(refusal="I can't."), chunk(finish="content_filter")],
                     [{"type": "text", "text": "I can't."}], "refusal", id="refusal"),
    ],
)  # fmt: skip
def test_openai_to_anthropic(
    payloads: list[dict[str, Any]], content: list[dict[str, Any]], stop_reason: str
) -> None:
    encoder = AnthropicFromOpenAI(model="up")
    _, body = run(encoder, openai_chunks(payloads))
    message = anthropic_view(body)
    assert message["content"] == content
    assert message["stop_reason"] == stop_reason
    assert message["model"] == "up" and message["role"] == "assistant"


def test_openai_usage_reaches_message_delta() -> None:
    encoder = AnthropicFromOpenAI(model="up")
    frames, body = run(encoder, openai_chunks([chunk("a"), chunk(finish="stop"), USAGE_CHUNK]))
    message = anthropic_view(body)
    assert message["usage"] == {"input_tokens": 20, "output_tokens": 6}
    assert frames[-1].usage == Usage(input_tokens=20, output_tokens=6)
    assert [f.content for f in frames] == [True, False, False]


def test_other_choices_are_not_translated() -> None:
    two = chunk("a")
    two["choices"].append({"index": 1, "delta": {"content": "b"}, "finish_reason": None})
    _, body = run(AnthropicFromOpenAI(model="up"), openai_chunks([two, chunk(finish="stop")]))
    assert anthropic_view(body)["content"] == [{"type": "text", "text": "a"}]


@pytest.mark.parametrize("err", [UpstreamOverloaded("busy"), UpstreamProtocolError("cut")])
def test_openai_failure_becomes_anthropic_error_event(err: GatewayError) -> None:
    encoder = AnthropicFromOpenAI(model="up")
    frames = [encoder.encode(c) for c in openai_chunks([chunk("", role="assistant"),
                                                        chunk("partial")])]  # fmt: skip
    body = b"".join(f.data for f in frames) + encoder.error(err)
    events = parse_sse(body.decode())
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "message_stop" not in names
    body_out = {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    assert events[-1] == ("error", body_out)


# -- Anthropic upstream -> Anthropic client ---------------------------------


def test_passthrough_relays_data_bytes_and_holds_message_stop() -> None:
    events = tool_events("search", ARGS_JSON, 9)
    chunks = anthropic_chunks(events)
    encoder = AnthropicPassthrough()
    frames, body = run(encoder, chunks)
    expected = b"".join(b"event: " + c.event.encode() + b"\ndata: " + c.data + b"\n\n"
                        for c in chunks if c.event)  # fmt: skip
    assert body == expected
    assert frames[-1].data == b""  # message_stop waits for finish()
    assert sum(f.content for f in frames) == 1 + 9  # one text delta, nine argument deltas
    usages = [f.usage for f in frames if f.usage is not None]
    assert usages == [Usage(input_tokens=11), Usage(input_tokens=11, output_tokens=20)]


def test_passthrough_counts_only_non_empty_deltas_as_content() -> None:
    events = [message_start(), text_block(0), delta(0, text=""), delta(0, text="x"),
              block_stop(0), block_start(1, {"type": "thinking", "thinking": ""}),
              delta(1, thinking="t"), delta(1, signature="s"), block_stop(1)]  # fmt: skip
    frames, _ = run(AnthropicPassthrough(), anthropic_chunks(events))
    assert [f.content for f in frames] == [False, False, False, True, False, False, True,
                                           False, False]  # fmt: skip
