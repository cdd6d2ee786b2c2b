"""Non-streaming responses between the dialects.

- :func:`openai_from_anthropic_message`: an Anthropic Message
  (https://docs.anthropic.com/en/api/messages, "Response") as an OpenAI
  ``chat.completion`` (https://platform.openai.com/docs/api-reference/chat/object).
- :func:`anthropic_from_openai_completion`: the reverse (choice 0 only).

``model`` is the name the client asked for, so the client sees the name it
used rather than the upstream's.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import UpstreamProtocolError
from .translate_common import (
    anthropic_usage,
    finish_reason,
    new_completion_id,
    new_message_id,
    now,
    openai_usage,
    stop_reason,
)


def openai_from_anthropic_message(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A Message as a ``chat.completion``: text blocks joined into
    ``content``, ``thinking`` blocks into ``reasoning_content``, ``tool_use``
    blocks into ``tool_calls`` (``input`` serialized as ``arguments``)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks = payload.get("content")
    for block in blocks if isinstance(blocks, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    usage = payload.get("usage")
    return {
        "id": payload["id"] if isinstance(payload.get("id"), str) else new_completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(payload.get("stop_reason")),
            }
        ],
        "usage": openai_usage(usage if isinstance(usage, dict) else {}),
    }


def _tool_input(arguments: object) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments or "{}") if isinstance(arguments, str | None) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        # Anthropic's tool_use.input is an object; anything else cannot be expressed.
        raise UpstreamProtocolError("upstream tool call arguments are not a JSON object")
    return parsed


def anthropic_from_openai_completion(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A ``chat.completion`` as a Message: ``reasoning_content`` -> a
    ``thinking`` block (empty ``signature``: none was issued), ``content`` (or
    ``refusal``) -> a ``text`` block, ``tool_calls`` -> ``tool_use`` blocks.

    Raises :class:`~gateway.errors.UpstreamProtocolError` when the upstream
    has no choice, a tool call without a function object, or a tool call's
    arguments that are not a JSON object.
    """
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("upstream completion has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise UpstreamProtocolError("upstream tool call is not a function object")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    usage = payload.get("usage")
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(usage if isinstance(usage, dict) else {}),
    }
