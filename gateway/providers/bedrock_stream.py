"""Bedrock ``ConverseStream`` events as Anthropic Messages stream events.

Bedrock's stream (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html;
shapes from botocore's ``bedrock-runtime`` service model, ``ConverseStreamOutput``)
mirrors Anthropic's (https://docs.anthropic.com/en/api/messages-streaming)
closely, so the provider speaks the ``anthropic`` dialect and every client
dialect is served through the existing bridge:

=======================  ==================================================
Bedrock event            Anthropic event(s)
=======================  ==================================================
``messageStart``         ``message_start`` (held back until the first block,
                         so an exception before any content is retryable)
``contentBlockStart``    ``content_block_start`` (``tool_use``)
``contentBlockDelta``    ``content_block_delta``: ``text`` -> ``text_delta``,
                         ``toolUse.input`` -> ``input_json_delta``,
                         ``reasoningContent.text`` / ``.signature`` ->
                         ``thinking_delta`` / ``signature_delta``; a text or
                         reasoning block (Bedrock sends no start for them)
                         gets its ``content_block_start`` first
``contentBlockStop``     ``content_block_stop``
``messageStop``          held: its ``stopReason`` goes on ``message_delta``
``metadata``             ``message_delta`` (stop reason, ``usage``), then
                         ``message_stop``: the end of the stream
exception messages       raised as the GatewayError of their status
=======================  ==================================================

Block indexes are renumbered from 0 in order of appearance (Anthropic
clients index their content list by them). Stop reasons: see
:data:`STOP_REASON`. Citation, image and tool-result deltas and redacted
reasoning have no Anthropic stream counterpart and are dropped.
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

import orjson

from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from .base import UpstreamChunk
from .eventstream import EventMessage
from .http import json_object
from .status import MESSAGE_LIMIT, error_for_status

STOP_REASON = MappingProxyType(
    {
        "end_turn": "end_turn",
        "tool_use": "tool_use",
        "max_tokens": "max_tokens",
        "stop_sequence": "stop_sequence",
        "guardrail_intervened": "refusal",
        "content_filtered": "refusal",
        "model_context_window_exceeded": "model_context_window_exceeded",
    }
)
"""Bedrock ``stopReason`` -> Anthropic ``stop_reason``; ``refusal`` is what
the OpenAI and Responses encoders turn into ``content_filter``. Any other
(``malformed_model_output``, ``malformed_tool_use``) is ``end_turn``."""

EXCEPTION_STATUS = MappingProxyType(
    {
        "throttlingException": 429,
        "serviceUnavailableException": 503,
        "internalServerException": 500,
        "validationException": 400,
        "modelStreamErrorException": 500,
    }
)
"""``:exception-type`` -> the HTTP status its shape declares in the service
model (``modelStreamErrorException`` declares 424, the model failing while it
streamed: an upstream failure here, not the client's)."""


def stop_reason(value: object) -> str:
    """The Anthropic ``stop_reason`` for a Bedrock ``stopReason``."""
    return STOP_REASON.get(value, "end_turn") if isinstance(value, str) else "end_turn"


def anthropic_usage(usage: object) -> dict[str, int]:
    """A Bedrock ``TokenUsage`` as an Anthropic ``usage``: ``inputTokens``
    (cache reads and writes not included, as Anthropic's ``input_tokens``),
    ``outputTokens``, ``cacheReadInputTokens`` / ``cacheWriteInputTokens``.
    Raises UpstreamProtocolError for a usage that is not an object of counts."""
    if not isinstance(usage, dict):
        raise UpstreamProtocolError("The upstream sent a usage that is not an object")
    out: dict[str, int] = {}
    for src, dst in _USAGE_FIELDS:
        value = usage.get(src)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UpstreamProtocolError(
                "The upstream sent a token count that is not a count", detail=f"{src}: {value!r}"
            )
        out[dst] = value
    return out


_USAGE_FIELDS = (
    ("inputTokens", "input_tokens"),
    ("outputTokens", "output_tokens"),
    ("cacheReadInputTokens", "cache_read_input_tokens"),
    ("cacheWriteInputTokens", "cache_creation_input_tokens"),
)


def error_for_exception_message(message: EventMessage) -> GatewayError:
    """The GatewayError for an ``exception`` message (its type, its payload's
    ``message``) or an ``error`` message (``:error-code``, ``:error-message``)."""
    name, payload = message.type, message.payload
    said = message.headers.get(":error-message")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    raw = body.get("message") if isinstance(body, dict) else said
    message_text = raw if isinstance(raw, str) else None
    detail = f"upstream {message.message_type} message {name}: {payload[:2000]!r}"
    status = EXCEPTION_STATUS.get(name)
    if status is None:
        tail = f": {message_text[:MESSAGE_LIMIT]}" if message_text else ""
        return UpstreamError(f"The upstream provider failed ({name}){tail}", detail=detail)
    return error_for_status(status, message_text, kind=name, detail=detail)


class ConverseEvents:
    """One stream's translation, stateful: :meth:`chunks` for each message,
    in order; :attr:`finished` after ``metadata``. Raises GatewayError for
    exception messages and UpstreamProtocolError for values of the wrong
    shape (the encoders downstream get only well-formed Anthropic events)."""

    __slots__ = ("_blocks", "_model", "_open", "_sent_start", "_stop", "finished")

    def __init__(self, model: str) -> None:
        self._model = model
        self._blocks: dict[int, int] = {}
        """Bedrock ``contentBlockIndex`` -> our index."""
        self._open: set[int] = set()
        self._sent_start = False
        self._stop: dict[str, Any] = {"stop_reason": "end_turn", "stop_sequence": None}
        self.finished = False

    def chunks(self, message: EventMessage, out: list[UpstreamChunk]) -> None:
        """Append the Anthropic events for ``message`` to ``out``."""
        if message.message_type != "event":
            raise error_for_exception_message(message)
        name = message.type
        payload = json_object(message.payload)
        if name == "contentBlockDelta":
            self._delta(payload, out)
        elif name == "contentBlockStart":
            start = _object(payload.get("start"), "start")
            tool = start.get("toolUse")
            if isinstance(tool, dict):
                block = {"type": "tool_use", "id": _str(tool.get("toolUseId"), "toolUseId"),
                         "name": _str(tool.get("name"), "name"), "input": {}}  # fmt: skip
                self._open_block(payload, block, out)
        elif name == "contentBlockStop":
            index = self._index(payload)
            if index not in self._open:  # an empty block: Bedrock sent no start
                self._open_block(payload, {"type": "text", "text": ""}, out)
            self._open.discard(index)
            _emit(out, "content_block_stop", {"type": "content_block_stop", "index": index})
        elif name == "messageStart":
            pass  # its only field is the role; message_start goes out with the first block
        elif name == "messageStop":
            self._stop = {"stop_reason": stop_reason(payload.get("stopReason")),
                          "stop_sequence": _stop_sequence(payload)}  # fmt: skip
        elif name == "metadata":
            self.end(out, anthropic_usage(payload.get("usage")))
        # Any other event type (newer than this code) carries nothing relayed.

    def end(self, out: list[UpstreamChunk], usage: dict[str, int]) -> None:
        """The closing ``message_delta`` (stop reason, usage) and ``message_stop``."""
        self._started(out)
        _emit(out, "message_delta", {"type": "message_delta", "delta": self._stop, "usage": usage})
        _emit(out, "message_stop", {"type": "message_stop"})
        self.finished = True

    def _started(self, out: list[UpstreamChunk]) -> None:
        """``message_start`` before the first block (or the end): held back
        so that an exception message before any content raises before the
        first chunk (retryable then), and sent even if ``messageStart`` was
        missing, so the client's stream is well formed."""
        if self._sent_start:
            return
        self._sent_start = True
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        _emit(out, "message_start", {"type": "message_start", "message": message})

    def _index(self, payload: dict[str, Any]) -> int:
        raw = payload.get("contentBlockIndex")
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise UpstreamProtocolError(
                "The upstream sent a content block index that is not an index",
                detail=f"contentBlockIndex: {raw!r}"[:300],
            )
        index = self._blocks.get(raw)
        if index is None:
            index = self._blocks[raw] = len(self._blocks)
        return index

    def _open_block(
        self, payload: dict[str, Any], block: dict[str, Any], out: list[UpstreamChunk]
    ) -> int:
        index = self._index(payload)
        self._started(out)
        self._open.add(index)
        _emit(out, "content_block_start",
              {"type": "content_block_start", "index": index, "content_block": block})  # fmt: skip
        return index

    def _delta(self, payload: dict[str, Any], out: list[UpstreamChunk]) -> None:
        delta = _object(payload.get("delta"), "delta")
        text = delta.get("text")
        if text is not None:
            kind, block, body = "text", {"type": "text", "text": ""}, {
                "type": "text_delta", "text": _str(text, "text")}  # fmt: skip
        elif "toolUse" in delta:
            tool = _object(delta["toolUse"], "toolUse")
            kind, block = "tool_use", None
            body = {"type": "input_json_delta", "partial_json": _str(tool.get("input"), "input")}
        elif "reasoningContent" in delta:
            reasoning = _object(delta["reasoningContent"], "reasoningContent")
            kind, block = "thinking", {"type": "thinking", "thinking": "", "signature": ""}
            if "text" in reasoning:
                body = {"type": "thinking_delta", "thinking": _str(reasoning["text"], "text")}
            elif "signature" in reasoning:
                body = {"type": "signature_delta",
                        "signature": _str(reasoning["signature"], "signature")}  # fmt: skip
            else:
                return  # redactedContent: no stream counterpart
        else:
            return  # citation, image, toolResult deltas: no counterpart
        index = self._index(payload)
        if index not in self._open:
            if block is None:
                raise UpstreamProtocolError(
                    "The upstream sent tool input for a block it did not start",
                    detail=f"{kind} delta at contentBlockIndex {payload.get('contentBlockIndex')}",
                )
            self._open_block(payload, block, out)
        _emit(out, "content_block_delta",
              {"type": "content_block_delta", "index": index, "delta": body})  # fmt: skip


def _emit(out: list[UpstreamChunk], name: str, payload: dict[str, Any]) -> None:
    out.append(UpstreamChunk(orjson.dumps(payload), payload, name))


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UpstreamProtocolError(
            f"The upstream sent a {name} that is not an object", detail=repr(value)[:300]
        )
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise UpstreamProtocolError(
            f"The upstream sent a {name} that is not a string", detail=repr(value)[:300]
        )
    return value


def _stop_sequence(payload: dict[str, Any]) -> str | None:
    """Claude on Bedrock names the stop sequence it met in
    ``additionalModelResponseFields.stop_sequence``; other models do not."""
    extra = payload.get("additionalModelResponseFields")
    value = extra.get("stop_sequence") if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None
