"""Values shared by the Gemini translations (both directions).

Wire format: the Gemini API reference,
https://ai.google.dev/api/generate-content (``GenerateContentRequest``,
``GenerateContentResponse``, ``Candidate.FinishReason``, ``UsageMetadata``)
and https://ai.google.dev/api/caching#Content (``Content``, ``Part``). The
API reads request fields in either lowerCamelCase or snake_case (the proto
JSON mapping); responses are lowerCamelCase.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

FINISH_REASON = MappingProxyType(
    {
        "STOP": "stop",
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
        "RECITATION": "content_filter",
        "BLOCKLIST": "content_filter",
        "PROHIBITED_CONTENT": "content_filter",
        "SPII": "content_filter",
        "IMAGE_SAFETY": "content_filter",
        "IMAGE_PROHIBITED_CONTENT": "content_filter",
        "LANGUAGE": "content_filter",
    }
)
"""Gemini ``Candidate.finishReason`` -> OpenAI ``finish_reason`` (anything
else, ``OTHER`` and ``MALFORMED_FUNCTION_CALL`` included, is ``stop``; a
candidate that called functions finishes with ``tool_calls``)."""

GEMINI_FINISH = MappingProxyType(
    {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "content_filter": "SAFETY",
        "tool_calls": "STOP",
        "function_call": "STOP",
    }
)
"""OpenAI ``finish_reason`` -> Gemini ``finishReason`` (default ``STOP``)."""

GOOGLE_STATUS = MappingProxyType(
    {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        405: "INVALID_ARGUMENT",
        408: "DEADLINE_EXCEEDED",
        409: "ABORTED",
        413: "INVALID_ARGUMENT",
        415: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
)
"""HTTP status -> the ``google.rpc.Code`` name Google APIs put in
``error.status`` (https://cloud.google.com/apis/design/errors)."""


def field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """``obj[camel]``, else ``obj[snake]`` (requests may use either name)."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def openai_finish(reason: object, called: bool) -> str:
    """The OpenAI finish reason for a Gemini one; ``called``: the candidate
    called a function (then ``STOP`` is ``tool_calls``)."""
    mapped = FINISH_REASON.get(str(reason), "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def google_status(status: int) -> str:
    """The ``google.rpc.Code`` name for an HTTP status (``UNKNOWN`` otherwise)."""
    return GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")


SIGNATURE_MARK = "__ts__"
"""Between a tool call's id and the Gemini ``thoughtSignature`` it carries."""


def id_with_signature(call_id: str, signature: object) -> str:
    """A tool-call id that carries the ``thoughtSignature`` of its
    ``functionCall`` part (https://ai.google.dev/gemini-api/docs/thought-signatures):
    Gemini asks for it back with the call in the next turn, and Chat
    Completions, Responses and Messages have no field for it, but every
    client sends a call's id back unchanged. The signature (base64) is
    written URL-safe without padding, so the id stays within
    ``[A-Za-z0-9_-]`` (what Anthropic accepts for ``tool_use`` ids)."""
    if not isinstance(signature, str) or not signature:
        return call_id
    safe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return f"{call_id}{SIGNATURE_MARK}{safe}"


def split_signature(call_id: str) -> tuple[str, str | None]:
    """``(id, thoughtSignature or None)`` of an id from :func:`id_with_signature`."""
    base, mark, safe = call_id.partition(SIGNATURE_MARK)
    if not mark or not safe:
        return call_id, None
    signature = safe.replace("-", "+").replace("_", "/")
    return base, signature + "=" * (-len(signature) % 4)
