"""Chat Completions chunks -> OpenAI Responses streaming events.

Event format: https://platform.openai.com/docs/api-reference/responses-streaming.
Each event is ``event: <type>`` and a JSON ``data`` carrying ``type`` and a
``sequence_number`` that starts at 0 and rises by one. A stream is:

``response.created``, ``response.in_progress``; per output item
``response.output_item.added`` then, for a message,
``response.content_part.added`` and ``response.output_text.delta``\\*, for a
function call ``response.function_call_arguments.delta``\\*; at the end, per
item in order, ``response.output_text.done`` + ``response.content_part.done``
or ``response.function_call_arguments.done``, then
``response.output_item.done``; last ``response.completed`` (with ``usage``),
``response.incomplete`` (``finish_reason: "length"`` ->
``incomplete_details.reason: "max_output_tokens"``, ``"content_filter"`` ->
``"content_filter"``) or, when the stream
fails, ``response.failed`` with an ``error`` object: never a completion.

``reasoning_content`` deltas, logprobs and refusals are not translated.
The output is held for the final events (they carry it whole): past
``max_output_bytes`` of it (text and arguments, by length, plus
:data:`ITEM_COST` per item) the stream fails with
:class:`~gateway.errors.UpstreamResponseTooLarge`.
:class:`Chained` runs an Anthropic stream through the Anthropic -> Chat
Completions translation first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import GatewayError, UpstreamResponseTooLarge
from ..providers.base import UpstreamChunk
from .frames import EMPTY, Frame, Relayed, StreamEncoder, Usage, data_lines, token_count
from .openai import chat_usage, usage_of
from .responses import (
    function_call_item,
    message_item,
    new_item_id,
    new_response_id,
    response_object,
    response_usage,
)
from .translate_common import incomplete_reason

DEFAULT_MAX_OUTPUT_BYTES = 8 << 20
"""As a model's ``max_response_bytes`` default: the output a stream may hold."""
ITEM_COST = 256
"""What an output item counts toward ``max_output_bytes`` beyond its text."""


@dataclass(slots=True)
class _Item:
    """One output item being streamed: a message's text or a function call."""

    kind: str
    item_id: str
    output_index: int
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class ResponsesFromChat:
    """Chat Completions chunks (OpenAI dialect) -> Responses events; see the
    module docstring. ``body`` is the client's Responses request (echoed in
    the Response object)."""

    def __init__(
        self,
        body: dict[str, Any],
        response_id: str | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self._body = body
        self._held = 0
        self._max_held = max_output_bytes
        self._id = response_id or new_response_id()
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._text: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._relayed = Relayed(body)

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self._body,
            response_id=self._id,
            created_at=self._created,
            status=status,
            output=[self._done_item(i) for i in self._items] if status != "in_progress" else [],
            **extra,
        )

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        out: list[bytes] = []
        if not self._started:
            self._started = True
            response = self._response("in_progress")
            out.append(self._event("response.created", response=response))
            out.append(self._event("response.in_progress", response=response))
        usage = usage_of(payload) if payload.get("usage") else None
        if usage is not None:
            self._usage = payload["usage"]
            self._relayed.report(usage)
        content = False
        for choice in payload.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one output per response: n > 1 has no Responses counterpart
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.extend(self._text_delta(text))
                content = True
            for call in delta.get("tool_calls") or ():
                out.extend(self._call_delta(call))
                content = True
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        if not out:
            return Frame(b"", usage=usage) if usage is not None else EMPTY
        return Frame(b"".join(out), content, usage)

    def _text_delta(self, text: str) -> list[bytes]:
        out = []
        item = self._text
        if item is None:
            item = self._text = _Item("message", new_item_id("msg"), len(self._items))
            self._items.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    output_index=item.output_index,
                    item=message_item(item.item_id, "", status="in_progress"),
                )
            )
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self._hold(len(text))
        item.text.append(text)
        self._relayed.pieces.append(text)
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        out = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            item = _Item(
                "function_call",
                new_item_id("fc"),
                len(self._items),
                call_id=str(call.get("id") or new_item_id("call")),
                name=str(function.get("name") or ""),
            )
            self._hold(ITEM_COST)
            self._calls[index] = item
            self._items.append(item)
            added = function_call_item(item.item_id, item.call_id, item.name, "", "in_progress")
            out.append(
                self._event(
                    "response.output_item.added", output_index=item.output_index, item=added
                )
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._hold(len(arguments))
            item.text.append(arguments)
            self._relayed.pieces.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.item_id,
                    output_index=item.output_index,
                    delta=arguments,
                )
            )
        return out

    def _hold(self, size: int) -> None:
        self._held += size
        if self._held > self._max_held:
            raise UpstreamResponseTooLarge(
                "The upstream response is larger than the gateway accepts",
                detail=f"Responses output over {self._max_held} bytes",
            )

    def _done_item(self, item: _Item) -> dict[str, Any]:
        text = "".join(item.text)
        if item.kind == "message":
            return message_item(item.item_id, text)
        return function_call_item(item.item_id, item.call_id, item.name, text)

    def finish(self) -> bytes:
        out = []
        for item in self._items:
            text = "".join(item.text)
            where = {"item_id": item.item_id, "output_index": item.output_index}
            if item.kind == "message":
                out.append(
                    self._event(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                out.append(
                    self._event("response.content_part.done", **where, content_index=0, part=part)
                )
            else:
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        **where,
                        name=item.name,
                        arguments=text,
                    )
                )
            out.append(
                self._event(
                    "response.output_item.done",
                    output_index=item.output_index,
                    item=self._done_item(item),
                )
            )
        # An upstream that sent no usage: the estimate (never a null usage).
        complete = self._relayed.complete
        usage = response_usage(self._usage if complete else chat_usage(self.usage()))
        if reason := incomplete_reason(self._finish):
            response = self._response("incomplete", usage=usage, incomplete_reason=reason)
            out.append(self._event("response.incomplete", response=response))
        else:
            out.append(
                self._event("response.completed", response=self._response("completed", usage=usage))
            )
        return b"".join(out)

    def usage(self) -> Usage:
        return self._relayed.usage()

    def error(self, err: GatewayError) -> bytes:
        failure = {"code": err.code or err.type, "message": err.message}
        head = b""
        if not self._started:
            self._started = True
            head = self._event("response.created", response=self._response("in_progress"))
        # A cancelled background response ends the same way, with its own status.
        status = "cancelled" if err.code == "cancelled" else "failed"
        response = self._response(status, error=failure)
        return head + self._event("response.failed", response=response)


class Chained:
    """Two encoders in a row: ``first``'s SSE output is parsed again and fed to
    ``second`` (Anthropic -> Chat Completions -> Responses). Translation paths
    only: the re-parse costs a JSON round trip per chunk."""

    def __init__(self, first: StreamEncoder, second: StreamEncoder) -> None:
        self._first = first
        self._second = second

    def encode(self, chunk: UpstreamChunk) -> Frame:
        frame = self._first.encode(chunk)
        if not frame.data:
            return frame
        out: list[bytes] = []
        content = frame.content
        for event in frame.data.split(b"\n\n"):
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            data = event[6:]
            inner = self._second.encode(UpstreamChunk(data, orjson.loads(data)))
            out.append(inner.data)
            content = content or inner.content
        return Frame(b"".join(out), content, frame.usage)

    def finish(self) -> bytes:
        return self._second.finish()

    def usage(self) -> Usage:
        return self._first.usage()

    def error(self, err: GatewayError) -> bytes:
        return self._second.error(err)


CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
"""Native events that carry generated content (what TTFT and ITL time)."""
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesPassthrough:
    """Native Responses events to a Responses client, byte for byte (unknown
    event types and fields included); usage is read from the final
    ``response``. A failure after the first event is a ``response.failed``
    numbered after the last event relayed, on the last Response seen."""

    __slots__ = ("_next_seq", "_relayed", "_response")

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self._next_seq = 0
        self._response: dict[str, Any] = {}
        self._relayed = Relayed(body)

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        name = chunk.event
        head = b"event: " + name.encode() + b"\n" if name else b""
        seq = payload.get("sequence_number")
        if isinstance(seq, int):
            self._next_seq = seq + 1
        response = payload.get("response")
        usage = None
        if isinstance(response, dict):
            self._response = response
            if name in _ENDS:
                usage = response_usage_of(response.get("usage"))
                self._relayed.report(usage)
        content = name in CONTENT_EVENTS
        if content and isinstance(delta := payload.get("delta"), str):
            self._relayed.pieces.append(delta)
        data = chunk.data
        if 10 in data:  # b"\n" (an int is a memchr; a bytes needle costs ~8x)
            data = data_lines(data)
        return Frame(head + b"data: " + data + b"\n\n", content, usage)

    def finish(self) -> bytes:
        return b""  # the upstream's own final event ended the stream

    def usage(self) -> Usage:
        return self._relayed.usage()

    def error(self, err: GatewayError) -> bytes:
        return failed_event(err, self._next_seq, self._response)


def failed_event(err: GatewayError, sequence_number: int, response: dict[str, Any]) -> bytes:
    """A ``response.failed`` SSE event: ``response`` (the last Response object
    seen, possibly empty) with status ``failed`` and ``err`` as its ``error``."""
    failed = {**response, "status": "failed",
              "error": {"code": err.code or err.type, "message": err.message}}  # fmt: skip
    data = {"type": "response.failed", "sequence_number": sequence_number, "response": failed}
    return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"


def response_usage_of(usage: object) -> Usage | None:
    """A Responses ``usage`` object's token counts."""
    if not isinstance(usage, dict):
        return None
    inp, out = usage.get("input_tokens"), usage.get("output_tokens")
    details = usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=token_count(inp),
        output_tokens=token_count(out),
        cached_input_tokens=token_count(cached) or 0,
    )
