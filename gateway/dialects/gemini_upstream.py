"""Gemini responses as Chat Completions: what the Gemini provider yields.

A ``GenerateContentResponse`` (https://ai.google.dev/api/generate-content#generatecontentresponse)
becomes ``chat.completion.chunk`` objects
(https://platform.openai.com/docs/api-reference/chat-streaming) for a
stream, or one ``chat.completion`` for a whole response, so every client
dialect is served through the existing OpenAI bridge:

- ``text`` parts -> ``delta.content``; ``thought: true`` parts ->
  ``delta.reasoning_content``;
- a ``functionCall`` part (Gemini sends each call whole) -> one complete
  tool-call delta (``id``, ``type``, ``function.name`` and all of
  ``function.arguments`` at once; ``id`` is Gemini's when it sends one,
  ``call_<hex>`` otherwise, and carries the part's ``thoughtSignature``:
  :func:`~.gemini_common.id_with_signature`);
- ``finishReason`` -> ``finish_reason`` (:data:`~.gemini_common.FINISH_REASON`;
  a candidate that called functions ends with ``tool_calls``); a prompt
  blocked (``promptFeedback.blockReason``, no candidates) ends with
  ``content_filter``;
- ``usageMetadata`` of the last event -> a usage chunk (``choices: []``):
  ``promptTokenCount`` -> ``prompt_tokens``, ``candidatesTokenCount`` +
  ``thoughtsTokenCount`` -> ``completion_tokens`` (reasoning counted as
  OpenAI counts it), ``cachedContentTokenCount`` -> ``cached_tokens``.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from .frames import token_count
from .gemini_common import field, id_with_signature, openai_finish
from .translate_common import new_completion_id, now


def _int(value: object) -> int:
    return token_count(value) or 0


def chat_usage_of(metadata: object) -> dict[str, Any] | None:
    """A Gemini ``usageMetadata`` as a Chat Completions ``usage`` object."""
    if not isinstance(metadata, dict):
        return None
    prompt = _int(metadata.get("promptTokenCount"))
    thoughts = _int(metadata.get("thoughtsTokenCount"))
    completion = _int(metadata.get("candidatesTokenCount")) + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = _int(metadata.get("cachedContentTokenCount"))
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _only_text(candidates: object) -> str | None:
    """The text of an event whose one candidate (index 0, no finish reason)
    has one plain text part; None for any other event."""
    if type(candidates) is not list or len(candidates) != 1:
        return None
    candidate = candidates[0]
    if type(candidate) is not dict or "finishReason" in candidate or candidate.get("index", 0):
        return None
    content = candidate.get("content")
    parts = content.get("parts") if type(content) is dict else None
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    if type(part) is not dict or len(part) != 1:
        return None
    text = part.get("text")
    return text if type(text) is str else None


def _call_id(call: dict[str, Any]) -> str:
    given = call.get("id")
    return given if isinstance(given, str) and given else f"call_{uuid.uuid4().hex[:24]}"


class ChunksFromGemini:
    """One stream's translation state: the completion id, and per candidate
    how many tool calls it made (their ``index``) and whether the role was sent.

    :meth:`chunks` returns the chunk objects for one Gemini event: none, one,
    or two (the content with its ``finish_reason``, then the usage chunk).
    """

    __slots__ = ("_calls", "_created", "_id", "_model", "_started")

    def __init__(self, model: str) -> None:
        self._id = new_completion_id()
        self._created = now()
        self._model = model
        self._calls: dict[int, int] = {}
        self._started: set[int] = set()

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }

    def chunks(self, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """(chunk objects, whether this event ended the stream: a finish
        reason, or a blocked prompt)."""
        candidates = payload.get("candidates")
        text = _only_text(candidates)
        if text is not None and 0 in self._started:  # the common event: one piece of text
            only: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None,
                                    "finish_reason": None}  # fmt: skip
            return [self._chunk([only])], False
        choices: list[dict[str, Any]] = []
        ended = False
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
            if not isinstance(candidate, dict):
                continue
            index = _int(candidate.get("index")) or position
            choice = self.choice(index, candidate)
            if choice is not None:
                ended = ended or choice["finish_reason"] is not None
                choices.append(choice)
        if not choices:
            feedback = payload.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                ended = True
                choices.append(
                    {"index": 0, "delta": {"role": "assistant"}, "finish_reason": "content_filter"}
                )
        out = [self._chunk(choices)] if choices else []
        if ended:
            usage = chat_usage_of(payload.get("usageMetadata"))
            if usage is not None:
                out.append({**self._chunk([]), "usage": usage})
        return out, ended

    def choice(self, index: int, candidate: dict[str, Any]) -> dict[str, Any] | None:
        """One candidate as a chunk's choice; None when it carries nothing."""
        delta: dict[str, Any] = {}
        if index not in self._started:
            self._started.add(index)
            delta["role"] = "assistant"
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        text: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            call = field(part, "functionCall", "function_call")
            if isinstance(call, dict):
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                signature = field(part, "thoughtSignature", "thought_signature")
                calls.append(_tool_call(n, call, signature))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else text).append(part["text"])
        if text:
            delta["content"] = "".join(text)
        if thoughts:
            delta["reasoning_content"] = "".join(thoughts)
        if calls:
            delta["tool_calls"] = calls
        reason = candidate.get("finishReason")
        finish = openai_finish(reason, index in self._calls) if reason else None
        if not delta and finish is None:
            return None
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _tool_call(n: int, call: dict[str, Any], signature: object) -> dict[str, Any]:
    arguments = orjson.dumps(call.get("args") or {}).decode()
    return {
        "index": n,
        "id": id_with_signature(_call_id(call), signature),
        "type": "function",
        "function": {"name": str(call.get("name") or ""), "arguments": arguments},
    }


def completion_from_gemini(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole ``GenerateContentResponse`` as a ``chat.completion`` object
    (https://platform.openai.com/docs/api-reference/chat/object)."""
    choices: list[dict[str, Any]] = []
    candidates = payload.get("candidates")
    for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
        if not isinstance(candidate, dict):
            continue
        chunks = ChunksFromGemini(model)
        choice = chunks.choice(position, candidate) or {"delta": {}, "finish_reason": None}
        delta = choice["delta"]
        message: dict[str, Any] = {"role": "assistant", "content": delta.get("content")}
        if delta.get("reasoning_content"):
            message["reasoning_content"] = delta["reasoning_content"]
        if delta.get("tool_calls"):
            message["tool_calls"] = [
                {k: v for k, v in call.items() if k != "index"} for call in delta["tool_calls"]
            ]
        reason = choice["finish_reason"] or ("tool_calls" if "tool_calls" in message else "stop")
        choices.append(
            {"index": position, "message": message, "logprobs": None, "finish_reason": reason}
        )
    if not choices:
        feedback = payload.get("promptFeedback")
        blocked = isinstance(feedback, dict) and bool(feedback.get("blockReason"))
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "logprobs": None,
                "finish_reason": "content_filter" if blocked else "stop",
            }
        )
    out: dict[str, Any] = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": choices,
    }
    usage = chat_usage_of(payload.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out
