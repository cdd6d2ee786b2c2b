"""Table-driven tests of request translation, both directions
(https://platform.openai.com/docs/api-reference/chat/create,
https://docs.anthropic.com/en/api/messages)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dialects.translate_request import (
    DEFAULT_MAX_TOKENS,
    anthropic_from_openai,
    openai_from_anthropic,
)
from gateway.errors import InvalidRequest

U = {"role": "user", "content": "hi"}
FN = {"type": "function", "function": {"name": "f", "description": "d",
      "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}  # fmt: skip
AFN = {"name": "f", "description": "d",
       "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}  # fmt: skip


def oa(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [U], **fields}


def an(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [U], **fields}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (oa(), {"messages": [U], "max_tokens": DEFAULT_MAX_TOKENS}),
        (oa(max_tokens=7), {"max_tokens": 7}),
        (oa(max_tokens=7, max_completion_tokens=9), {"max_tokens": 9}),
        (oa(temperature=1.7, top_p=0.5), {"temperature": 1.0, "top_p": 0.5}),
        (oa(stop="x"), {"stop_sequences": ["x"]}),
        (oa(stop=["x", "y"]), {"stop_sequences": ["x", "y"]}),
        (oa(user="u1"), {"metadata": {"user_id": "u1"}}),
        (oa(top_k=3, thinking={"type": "enabled", "budget_tokens": 1024}),
         {"top_k": 3, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        (oa(messages=[{"role": "system", "content": "S"}, U]),
         {"system": "S", "messages": [U]}),
        (oa(messages=[{"role": "developer", "content": [{"type": "text", "text": "A"}]}, U,
                      {"role": "system", "content": "B"}]),
         {"system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}),
        (oa(messages=[U, {"role": "assistant", "content": "yo"}, U]),
         {"messages": [U, {"role": "assistant", "content": "yo"}, U]}),
        (oa(messages=[U, U]), {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "text", "text": "hi"}]}]}),
        (oa(messages=[{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]),
         {"messages": [{"role": "user", "content": [
             {"type": "text", "text": "see"},
             {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                          "data": "AAAA"}},
             {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}),
        (oa(messages=[U, {"role": "assistant", "content": "Let me look.", "reasoning_content": "r",
                          "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "f", "arguments": '{"a": 1}'}},
                                         {"id": "c2", "type": "function",
                                          "function": {"name": "f", "arguments": ""}}]},
                      {"role": "tool", "tool_call_id": "c1", "content": "one"},
                      {"role": "tool", "tool_call_id": "c2",
                       "content": [{"type": "text", "text": "two"}]},
                      {"role": "user", "content": "thanks"}]),
         {"messages": [U,
                       {"role": "assistant", "content": [
                           {"type": "text", "text": "Let me look."},
                           {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
                           {"type": "tool_use", "id": "c2", "name": "f", "input": {}}]},
                       {"role": "user", "content": [
                           {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                           {"type": "tool_result", "tool_use_id": "c2", "content": "two"},
                           {"type": "text", "text": "thanks"}]}]}),
        (oa(tools=[FN]), {"tools": [AFN]}),
        (oa(tools=[FN], tool_choice="auto"), {"tool_choice": {"type": "auto"}}),
        (oa(tools=[FN], tool_choice="none"), {"tool_choice": {"type": "none"}}),
        (oa(tools=[FN], tool_choice="required"), {"tool_choice": {"type": "any"}}),
        (oa(tools=[FN], tool_choice={"type": "function", "function": {"name": "f"}}),
         {"tool_choice": {"type": "tool", "name": "f"}}),
        (oa(tools=[FN], parallel_tool_calls=False),
         {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ],
)  # fmt: skip
def test_openai_to_anthropic(body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = anthropic_from_openai(body)
    assert out["model"] == "m"
    for key, value in expected.items():
        assert out[key] == value, key


def test_openai_fields_without_counterpart_are_dropped() -> None:
    body = oa(seed=1, presence_penalty=0.1, frequency_penalty=0.2, logit_bias={"1": 1},
              logprobs=True, response_format={"type": "json_object"},
              stream=True, stream_options={"include_usage": True}, n=1)  # fmt: skip
    out = anthropic_from_openai(body)
    assert set(out) == {"model", "messages", "max_tokens", "stream"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (oa(n=2), "n"),
        (oa(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]), "messages"),
        (oa(messages=[{"role": "tool", "content": "x"}]), "messages"),
        (oa(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages"),
        (oa(messages=[{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
         "messages"),
        (oa(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools"),
        (oa(tools=[FN], tool_choice="sometimes"), "tool_choice"),
    ],
)  # fmt: skip
def test_openai_to_anthropic_rejects_untranslatable(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        anthropic_from_openai(body)
    assert excinfo.value.param == param


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (an(), {"messages": [U], "max_tokens": 10}),
        (an(system="S"), {"messages": [{"role": "system", "content": "S"}, U]}),
        (an(system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]),
         {"messages": [{"role": "system", "content": "AB"}, U]}),
        (an(stop_sequences=["x"], temperature=0.2, top_p=0.9),
         {"stop": ["x"], "temperature": 0.2, "top_p": 0.9}),
        (an(stream=True), {"stream": True, "stream_options": {"include_usage": True}}),
        (an(metadata={"user_id": "u1"}), {"user": "u1"}),
        (an(messages=[U, {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
             {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
                 "content": [{"type": "text", "text": "boom"}]},
                {"type": "text", "text": "and?"}]}]),
         {"messages": [U,
                       {"role": "assistant", "content": "Looking.", "tool_calls": [
                           {"id": "t1", "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'}}]},
                       {"role": "tool", "tool_call_id": "t1", "content": "one"},
                       {"role": "tool", "tool_call_id": "t2", "content": "boom"},
                       {"role": "user", "content": "and?"}]}),
        (an(messages=[{"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "AAAA"}}]}]),
         {"messages": [{"role": "user", "content": [
             {"type": "text", "text": "see"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        (an(tools=[AFN]), {"tools": [FN]}),
        (an(tools=[AFN], tool_choice={"type": "any"}), {"tool_choice": "required"}),
        (an(tools=[AFN], tool_choice={"type": "tool", "name": "f"}),
         {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
        (an(tools=[AFN], tool_choice={"type": "auto", "disable_parallel_tool_use": True}),
         {"tool_choice": "auto", "parallel_tool_calls": False}),
    ],
)  # fmt: skip
def test_anthropic_to_openai(body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = openai_from_anthropic(body)
    for key, value in expected.items():
        assert out[key] == value, key


def test_anthropic_fields_without_counterpart_are_dropped() -> None:
    body = an(top_k=5, thinking={"type": "enabled", "budget_tokens": 1024}, service_tier="auto",
              vendor_extension=1)  # fmt: skip
    out = openai_from_anthropic(body)
    assert set(out) == {"model", "messages", "max_tokens", "reasoning_effort"}
    assert out["reasoning_effort"] == "low"  # translated: thinking with a 1024 budget


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (an(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]),
         "messages"),
        (an(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools"),
        (an(tools=[AFN], tool_choice={"type": "sometimes"}), "tool_choice"),
    ],
)  # fmt: skip
def test_anthropic_to_openai_rejects_untranslatable(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        openai_from_anthropic(body)
    assert excinfo.value.param == param
