"""A translated assistant turn that only calls tools reaches an OpenAI-dialect
upstream with ``content: ""``: llama-cpp-python's server answers
``"content": null`` with a 500 (its request model wants a string), and chat
templates that print ``message['content']`` (SmolLM2's) fail without the key.
Found by the tool round trips of tests/test_clients_python.py and
tests/test_clients_js.py against the real model."""

from __future__ import annotations

from gateway.dialects.responses import chat_from_responses
from gateway.dialects.translate_request import openai_from_anthropic

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}


def test_a_responses_function_call_item_becomes_a_turn_with_empty_content() -> None:
    chat = chat_from_responses(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
        }
    )
    assert chat["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}


def test_an_anthropic_tool_use_turn_becomes_a_turn_with_empty_content() -> None:
    body = openai_from_anthropic(
        {
            "model": "m",
            "max_tokens": 8,
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}],
                },
            ],
        }
    )
    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}


def test_text_with_tool_calls_keeps_its_text() -> None:
    body = openai_from_anthropic(
        {
            "model": "m",
            "max_tokens": 8,
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
                    ],
                }
            ],
        }
    )
    assert body["messages"][0]["content"] == "Looking."
