"""Non-streaming responses translated both ways
(https://docs.anthropic.com/en/api/messages, "Response";
https://platform.openai.com/docs/api-reference/chat/object)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.dialects.translate_response import (
    anthropic_from_openai_completion,
    openai_from_anthropic_message,
)
from gateway.errors import UpstreamProtocolError
from tests.fake_anthropic import message

ARGS = {"city": "Kraków", "days": [1, 2]}


@pytest.mark.parametrize(
    ("content", "stop", "expected_message", "finish"),
    [
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "end_turn",
         {"content": "ab"}, "stop"),
        ([{"type": "text", "text": "x"}], "max_tokens", {"content": "x"}, "length"),
        ([{"type": "text", "text": "x"}], "stop_sequence", {"content": "x"}, "stop"),
        ([{"type": "thinking", "thinking": "hmm", "signature": "s"},
          {"type": "redacted_thinking", "data": "zz"}, {"type": "text", "text": "ok"}],
         "end_turn", {"content": "ok", "reasoning_content": "hmm"}, "stop"),
        ([{"type": "tool_use", "id": "t1", "name": "f", "input": ARGS}], "tool_use",
         {"content": None, "tool_calls": [{"id": "t1", "type": "function",
          "function": {"name": "f", "arguments": orjson.dumps(ARGS).decode()}}]},
         "tool_calls"),
        ([], "end_turn", {"content": ""}, "stop"),
    ],
)  # fmt: skip
def test_anthropic_message_to_openai(
    content: list[dict[str, Any]], stop: str, expected_message: dict[str, Any], finish: str
) -> None:
    payload = message(content, stop_reason=stop)
    payload["usage"]["cache_read_input_tokens"] = 8
    out = openai_from_anthropic_message(payload, model="claude")
    assert out["object"] == "chat.completion" and out["model"] == "claude"
    choice = out["choices"][0]
    assert choice["finish_reason"] == finish and choice["message"]["role"] == "assistant"
    for key, value in expected_message.items():
        assert choice["message"][key] == value, key
    assert out["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23,
                            "prompt_tokens_details": {"cached_tokens": 8}}  # fmt: skip


def completion(message_: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message_},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                  "prompt_tokens_details": {"cached_tokens": 2}},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("msg", "finish", "content", "stop"),
    [
        ({"content": "hi"}, "stop", [{"type": "text", "text": "hi"}], "end_turn"),
        ({"content": "hi"}, "length", [{"type": "text", "text": "hi"}], "max_tokens"),
        ({"content": None, "refusal": "no"}, "content_filter",
         [{"type": "text", "text": "no"}], "refusal"),
        ({"content": "ok", "reasoning_content": "think"}, "stop",
         [{"type": "thinking", "thinking": "think", "signature": ""},
          {"type": "text", "text": "ok"}], "end_turn"),
        ({"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "f", "arguments": orjson.dumps(ARGS).decode()}}]}, "tool_calls",
         [{"type": "tool_use", "id": "c1", "name": "f", "input": ARGS}], "tool_use"),
    ],
)  # fmt: skip
def test_openai_completion_to_anthropic(
    msg: dict[str, Any], finish: str, content: list[dict[str, Any]], stop: str
) -> None:
    out = anthropic_from_openai_completion(completion(msg, finish), model="up")
    assert out["type"] == "message" and out["role"] == "assistant" and out["model"] == "up"
    assert out["id"].startswith("msg_")
    assert out["content"] == content and out["stop_reason"] == stop
    assert out["usage"] == {"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 2}


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "chat.completion", "choices": []},
        completion({"content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}),
    ],
)  # fmt: skip
def test_untranslatable_completion_is_a_protocol_error(payload: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        anthropic_from_openai_completion(payload, model="up")
