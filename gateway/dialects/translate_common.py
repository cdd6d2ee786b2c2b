"""Values shared by the request, stream and response translations.

Finish reasons: OpenAI ``finish_reason``
(https://platform.openai.com/docs/api-reference/chat/object) and Anthropic
``stop_reason`` (https://docs.anthropic.com/en/api/messages#response-stop-reason).
Usage: OpenAI ``prompt_tokens`` counts cached tokens too; Anthropic's
``input_tokens`` does not (the cache counts are separate fields).
"""

from __future__ import annotations

import time
import uuid
from types import MappingProxyType
from typing import Any

from .anthropic import input_tokens_of

FINISH_REASON = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)
"""Anthropic ``stop_reason`` -> OpenAI ``finish_reason``."""

STOP_REASON = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
)
"""OpenAI ``finish_reason`` -> Anthropic ``stop_reason``."""


INCOMPLETE_REASON = MappingProxyType(
    {
        "length": "max_output_tokens",
        "content_filter": "content_filter",
    }
)
"""OpenAI ``finish_reason`` -> Responses ``incomplete_details.reason``
(https://platform.openai.com/docs/api-reference/responses/object); the others
complete the response. ``content_filter``: Azure OpenAI's filtered output."""


def incomplete_reason(finish: object) -> str | None:
    """The Responses incomplete reason for an OpenAI finish reason, or None
    (the response completed)."""
    return INCOMPLETE_REASON.get(str(finish))


def finish_reason(stop_reason: object) -> str:
    """The OpenAI finish reason for an Anthropic stop reason (default ``stop``)."""
    return FINISH_REASON.get(str(stop_reason), "stop")


def stop_reason(finish: object) -> str:
    """The Anthropic stop reason for an OpenAI finish reason (default ``end_turn``)."""
    return STOP_REASON.get(str(finish), "end_turn")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``usage`` object as an OpenAI ``usage`` object."""
    prompt = input_tokens_of(usage) or 0
    output = usage.get("output_tokens")
    completion = output if isinstance(output, int) else 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = usage.get("cache_read_input_tokens")
    if isinstance(cached, int) and cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``usage`` object as an Anthropic ``usage`` object."""
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) else 0
    out: dict[str, Any] = {
        "input_tokens": (prompt if isinstance(prompt, int) else 0) - cached,
        "output_tokens": completion if isinstance(completion, int) else 0,
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def new_message_id() -> str:
    """A fresh Anthropic-style message id (``msg_...``)."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def new_completion_id() -> str:
    """A fresh OpenAI-style completion id (``chatcmpl-...``)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    """Unix seconds: the ``created`` field of OpenAI objects (wall time by spec)."""
    return int(time.time())
