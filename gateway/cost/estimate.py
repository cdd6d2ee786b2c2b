"""The usage of a non-streamed answer that reported none, estimated, so that
it is priced and charged like a stream's (:mod:`gateway.usage_estimate`'s
word pieces; marked estimated).

Input tokens: the request's prompt (any client dialect). Output tokens: the
answer's generated text: OpenAI Chat Completions ``choices[].message``
``content``, ``reasoning_content`` and tool-call ``arguments``
(https://platform.openai.com/docs/api-reference/chat/object); Anthropic
Messages ``content[]`` ``text``, ``thinking`` and ``tool_use`` input
(https://docs.anthropic.com/en/api/messages). A count the upstream did
report is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from ..dialects.frames import Usage
from ..usage_estimate import estimate_input_tokens, estimate_tokens


def _list(value: Any) -> list[Any]:
    """``value`` if a list, else empty: an upstream's answer is untrusted
    (the dialect's bridge rejects an ill-typed one; this runs first)."""
    return value if isinstance(value, list) else []


def _openai_texts(payload: dict[str, Any]) -> Iterator[str]:
    for choice in _list(payload.get("choices")):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        for field in ("content", "reasoning_content"):
            if isinstance(text := message.get(field), str):
                yield text
        for call in _list(message.get("tool_calls")):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(args := function.get("arguments"), str):
                yield args


def _anthropic_texts(payload: dict[str, Any]) -> Iterator[str]:
    for block in _list(payload.get("content")):
        if not isinstance(block, dict):
            continue
        for field in ("text", "thinking"):
            if isinstance(text := block.get(field), str):
                yield text
        if block.get("type") == "tool_use" and "input" in block:
            yield orjson.dumps(block["input"]).decode()


def answer_usage(
    body: dict[str, Any], payload: dict[str, Any], dialect: str, reported: Usage | None
) -> Usage:
    """``reported`` when it has both counts; else the missing ones estimated
    from the client's request ``body`` and the upstream's answer ``payload``
    (upstream ``dialect``: ``openai`` or ``anthropic``), marked estimated."""
    if reported is not None and None not in (reported.input_tokens, reported.output_tokens):
        return reported
    input_tokens = reported.input_tokens if reported is not None else None
    output_tokens = reported.output_tokens if reported is not None else None
    if input_tokens is None:
        input_tokens = estimate_input_tokens(body)
    if output_tokens is None:
        texts = _anthropic_texts(payload) if dialect == "anthropic" else _openai_texts(payload)
        output_tokens = estimate_tokens("".join(texts))
    cached = reported.cached_input_tokens if reported is not None else 0
    return Usage(input_tokens, output_tokens, estimated=True, cached_input_tokens=cached)
