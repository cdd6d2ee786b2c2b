"""Chat Completions as Gemini responses: what a Gemini-format client reads.

The route (:mod:`gateway.api.gemini`) serves any provider through the Chat
Completions dialect; this module writes its answers as the Gemini API does
(https://ai.google.dev/api/generate-content#generatecontentresponse):

- :class:`GeminiFromOpenAI`: ``chat.completion.chunk`` events -> one
  ``data: {GenerateContentResponse}`` SSE event per chunk with text
  (``alt=sse``; the body ends after the last event, no terminal marker).
  Gemini sends function calls whole, so tool-call argument deltas are
  gathered and each call goes out as one ``functionCall`` part (arguments
  parsed) in the last event, with ``finishReason`` and ``usageMetadata``.
  Reasoning deltas become ``thought: true`` parts.
- :func:`gemini_from_completion`: a ``chat.completion`` -> a
  ``GenerateContentResponse``.
- :func:`gemini_error_body`: a GatewayError as Google's error object
  ``{"error": {"code", "message", "status"}}``
  (https://cloud.google.com/apis/design/errors#http_mapping), the JSON
  error body of the route and, as a ``data:`` event, the end of a failed
  stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import GatewayError
from ..providers.base import UpstreamChunk
from .frames import Frame, Relayed, Usage
from .gemini_common import GEMINI_FINISH, google_status, split_signature
from .openai import chat_usage, usage_of
from .translate_common import new_completion_id


def gemini_error_body(err: GatewayError) -> dict[str, Any]:
    """``err`` as ``{"error": {"code": <HTTP status>, "message", "status"}}``."""
    code = err.http_status
    return {"error": {"code": code, "message": err.message, "status": google_status(code)}}


def usage_metadata(usage: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions ``usage`` object as Gemini ``usageMetadata``."""
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    }
    details = usage.get("completion_tokens_details")
    thoughts = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if isinstance(thoughts, int) and thoughts:
        out["candidatesTokenCount"] = completion - thoughts
        out["thoughtsTokenCount"] = thoughts
    cached = usage.get("prompt_tokens_details")
    cached = cached.get("cached_tokens") if isinstance(cached, dict) else None
    if isinstance(cached, int) and cached:
        out["cachedContentTokenCount"] = cached
    return out


def _function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A whole ``functionCall`` part; arguments that are not a JSON object
    (a truncated call) are kept as text under ``arguments``; a
    ``thoughtSignature`` carried in the id goes back on the part."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        args = {"arguments": arguments}
    base, signature = split_signature(call_id)
    call: dict[str, Any] = {"name": name, "args": args}
    if base:
        call["id"] = base
    part: dict[str, Any] = {"functionCall": call}
    if signature:
        part["thoughtSignature"] = signature
    return part


class GeminiFromOpenAI:
    """OpenAI-dialect chunks -> Gemini SSE events (choice 0 only). See the
    module docstring; implements :class:`~gateway.dialects.frames.StreamEncoder`."""

    __slots__ = ("_calls", "_finish", "_id", "_model", "_relayed", "_usage")

    def __init__(self, *, model: str, body: dict[str, Any] | None = None) -> None:
        self._model = model
        self._id = new_completion_id()
        self._relayed = Relayed(body)
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}

    def _event(
        self, parts: list[dict[str, Any]], finish: str | None, usage: dict[str, Any] | None
    ) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        out: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            out["usageMetadata"] = usage
        out["modelVersion"] = self._model
        out["responseId"] = self._id
        return b"data: " + orjson.dumps(out) + b"\r\n\r\n"

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        usage = usage_of(payload) if payload.get("usage") else None
        if usage is not None:
            self._usage = payload["usage"]
            self._relayed.report(usage)
        parts: list[dict[str, Any]] = []
        content = False
        pieces = self._relayed.pieces
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                parts.append({"text": reasoning, "thought": True})
                pieces.append(reasoning)
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    parts.append({"text": text})
                    pieces.append(text)
            for call in delta.get("tool_calls") or ():
                content = self._gather(call) or content
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        if not parts:
            return Frame(b"", content, usage)
        return Frame(self._event(parts, None, None), True, usage)

    def _gather(self, call: dict[str, Any]) -> bool:
        entry = self._calls.setdefault(call.get("index", 0), ["", "", ""])
        function = call.get("function") or {}
        if call.get("id"):
            entry[0] = str(call["id"])
        if function.get("name"):
            entry[1] = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            entry[2] += arguments
            self._relayed.pieces.append(arguments)
            return True
        return False

    def finish(self) -> bytes:
        parts = [_function_call(*entry) for _, entry in sorted(self._calls.items())]
        usage = self._usage if self._relayed.complete else chat_usage(self.usage())
        return self._event(parts, _finish(self._finish), usage_metadata(usage))

    def usage(self) -> Usage:
        return self._relayed.usage()

    def error(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(gemini_error_body(err)) + b"\r\n\r\n"


def gemini_from_completion(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` object as a ``GenerateContentResponse`` (values
    of the wrong type are left out: no candidate for a choice that is not an
    object, no part for a text that is not a string)."""
    candidates: list[dict[str, Any]] = []
    choices = payload.get("choices")
    for position, choice in enumerate(choices if isinstance(choices, list) else ()):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        parts: list[dict[str, Any]] = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        for key in ("content", "refusal"):
            if isinstance(message.get(key), str) and message[key]:
                parts.append({"text": message[key]})
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            arguments = function.get("arguments")
            parts.append(
                _function_call(
                    str(call.get("id") or ""),
                    str(function.get("name") or ""),
                    arguments if isinstance(arguments, str) else "",
                )
            )
        index = choice.get("index")
        candidates.append(
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _finish(choice.get("finish_reason")),
                "index": index if isinstance(index, int) else position,
            }
        )
    out: dict[str, Any] = {"candidates": candidates}
    usage = payload.get("usage")
    if isinstance(usage, dict):
        out["usageMetadata"] = usage_metadata(usage)
    out["modelVersion"] = model
    response_id = payload.get("id")
    out["responseId"] = response_id if isinstance(response_id, str) else new_completion_id()
    return out


def _finish(reason: object) -> str:
    """The Gemini ``finishReason`` for an OpenAI ``finish_reason`` (``STOP`` by default)."""
    return GEMINI_FINISH.get(reason, "STOP") if isinstance(reason, str) else "STOP"
