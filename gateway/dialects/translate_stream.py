"""Stream encoders between the dialects: stateful, one per stream.

- :class:`OpenAIFromAnthropic`: Anthropic Messages stream events
  (https://docs.anthropic.com/en/api/messages-streaming) -> OpenAI
  ``chat.completion.chunk`` SSE (https://platform.openai.com/docs/api-reference/chat-streaming).
- :class:`AnthropicFromOpenAI`: OpenAI chunks -> a complete Anthropic event
  sequence (``message_start``; ``content_block_start`` / ``_delta`` /
  ``_stop`` per block with consecutive indexes; ``message_delta`` with
  ``stop_reason`` and usage; ``message_stop``), which the anthropic SDK's
  ``messages.stream()`` accumulates.

Both implement :class:`~gateway.dialects.frames.StreamEncoder`. Upstream text
arrives decoded per event (multi-byte characters split across reads are
reassembled by the SSE parser), so no byte-level state is needed here.
Tool calls are forwarded as they arrive, never buffered.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import GatewayError
from ..providers.base import UpstreamChunk
from .anthropic import cache_read_of, error_event, event_bytes, input_tokens_of
from .frames import EMPTY, Frame, Relayed, Usage, token_count
from .openai import chat_usage, usage_of
from .openai import error_event as openai_error_event
from .translate_common import (
    anthropic_usage,
    finish_reason,
    new_completion_id,
    new_message_id,
    now,
    openai_usage,
    stop_reason,
)


def _int(value: object) -> int | None:
    return token_count(value)


class OpenAIFromAnthropic:
    """Anthropic upstream events -> OpenAI chunks for an OpenAI client.

    ``text_delta`` -> ``delta.content``; ``thinking_delta`` ->
    ``delta.reasoning_content``; a ``tool_use`` block -> ``delta.tool_calls``
    (``index`` counts tool blocks from 0, the first delta carries ``id``,
    ``type`` and ``function.name``, each ``input_json_delta`` then becomes
    ``function.arguments``); ``message_delta.stop_reason`` ->
    ``finish_reason``. A usage chunk (``choices: []``) follows only when the
    client asked for ``stream_options.include_usage``. ``signature_delta``,
    ``citations_delta`` and server-tool blocks have no OpenAI counterpart and
    are dropped.
    """

    __slots__ = ("_created", "_id", "_include_usage", "_model", "_relayed", "_tools", "_usage")

    def __init__(
        self, *, model: str, include_usage: bool, body: dict[str, Any] | None = None
    ) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = new_completion_id()
        self._created = now()
        self._tools: dict[int, int] = {}
        self._usage: dict[str, Any] = {}
        self._relayed = Relayed(body)

    def _payload(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps(self._payload([choice])) + b"\n\n"

    def _merge_usage(self, usage: object) -> Usage:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        merged = Usage(
            input_tokens_of(self._usage),
            _int(self._usage.get("output_tokens")),
            cached_input_tokens=cache_read_of(self._usage),
        )
        self._relayed.report(merged)
        return merged

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        name = chunk.event or payload.get("type")
        if name == "content_block_delta":
            return self._delta(payload)
        if name == "content_block_start":
            return self._start(payload)
        if name == "message_start":
            message = payload.get("message") or {}
            if isinstance(message.get("id"), str):
                self._id = message["id"]
            usage = self._merge_usage(message.get("usage"))
            return Frame(self._chunk({"role": "assistant", "content": ""}), usage=usage)
        if name == "message_delta":
            usage = self._merge_usage(payload.get("usage"))
            reason = (payload.get("delta") or {}).get("stop_reason")
            return Frame(self._chunk({}, finish_reason(reason)), usage=usage)
        if name == "message_stop" and self._include_usage:
            complete = self._relayed.complete
            usage_dict = openai_usage(self._usage) if complete else chat_usage(self.usage())
            usage_chunk = {**self._payload([]), "usage": usage_dict}
            return Frame(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
        return EMPTY

    def _start(self, payload: dict[str, Any]) -> Frame:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tools[payload.get("index", 0)] = len(self._tools)
            function = {"name": block.get("name"), "arguments": ""}
            call = {"index": n, "id": block.get("id"), "type": "function", "function": function}
            return Frame(self._chunk({"tool_calls": [call]}))
        if kind == "text" and block.get("text"):
            self._relayed.pieces.append(block["text"])
            return Frame(self._chunk({"content": block["text"]}), content=True)
        if kind == "thinking" and block.get("thinking"):
            self._relayed.pieces.append(block["thinking"])
            return Frame(self._chunk({"reasoning_content": block["thinking"]}), content=True)
        return EMPTY

    def _delta(self, payload: dict[str, Any]) -> Frame:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self._relayed.pieces.append(delta["text"])
            return Frame(self._chunk({"content": delta["text"]}), content=True)
        if kind == "input_json_delta" and delta.get("partial_json"):
            n = self._tools.get(payload.get("index", 0))
            if n is None:
                return EMPTY  # arguments of a server tool: not the client's to run
            self._relayed.pieces.append(delta["partial_json"])
            call = {"index": n, "function": {"arguments": delta["partial_json"]}}
            return Frame(self._chunk({"tool_calls": [call]}), content=True)
        if kind == "thinking_delta" and delta.get("thinking"):
            self._relayed.pieces.append(delta["thinking"])
            return Frame(self._chunk({"reasoning_content": delta["thinking"]}), content=True)
        return EMPTY

    def usage(self) -> Usage:
        return self._relayed.usage()

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return openai_error_event(err)


class AnthropicFromOpenAI:
    """OpenAI-dialect upstream chunks -> Anthropic events for an Anthropic client.

    Only choice 0 is translated (a Messages response has one). The
    ``message_delta`` and ``message_stop`` are written by :meth:`finish`,
    after the upstream's usage chunk (which follows ``finish_reason``), so
    the client gets exact token counts; ``message_start`` reports
    ``input_tokens: 0`` because OpenAI reports usage only at the end, and
    ``message_delta.usage.input_tokens`` carries the real count (the SDK
    overwrites the snapshot with it). Tool-call argument deltas for a call
    whose block was already closed (interleaved parallel calls, which
    OpenAI does not send) keep that block's index.
    """

    __slots__ = (
        "_id", "_model", "_next", "_open", "_relayed", "_started", "_stop", "_tools", "_usage",
    )  # fmt: skip

    def __init__(self, *, model: str, body: dict[str, Any] | None = None) -> None:
        self._model = model
        self._relayed = Relayed(body)
        self._id = new_message_id()
        self._started = False
        self._open: tuple[str, int] | None = None
        self._next = 0
        self._tools: dict[int, int] = {}
        self._stop: str | None = None
        self._usage: dict[str, Any] = {}

    def _message_start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event_bytes("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index = self._open[1]
        self._open = None
        return event_bytes("content_block_stop", {"type": "content_block_stop", "index": index})

    def _ensure(self, key: str, block: dict[str, Any]) -> tuple[bytes, int]:
        """Open a block for ``key`` unless it is the open one; returns the
        bytes written and the block's index."""
        if self._open is not None and self._open[0] == key:
            return b"", self._open[1]
        out = self._close()
        index = self._next
        self._next += 1
        self._open = (key, index)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return out + event_bytes("content_block_start", start), index

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        return event_bytes("content_block_delta", payload)

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        out: list[bytes] = [] if self._started else [self._message_start()]
        content = False
        usage = usage_of(payload)
        if usage is not None:
            self._usage = payload["usage"]
            self._relayed.report(usage)
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = self._choice_delta(delta, out) or content
            if choice.get("finish_reason"):
                self._stop = stop_reason(choice["finish_reason"])
                out.append(self._close())
        return Frame(b"".join(out), content, usage)

    def _choice_delta(self, delta: dict[str, Any], out: list[bytes]) -> bool:
        content = False
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            opened, index = self._ensure("thinking", {"type": "thinking", "thinking": "",
                                                      "signature": ""})  # fmt: skip
            out += (opened, self._delta(index, {"type": "thinking_delta", "thinking": reasoning}))
            self._relayed.pieces.append(reasoning)
            content = True
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                opened, index = self._ensure("text", {"type": "text", "text": ""})
                out += (opened, self._delta(index, {"type": "text_delta", "text": text}))
                self._relayed.pieces.append(text)
                content = True
        for call in delta.get("tool_calls") or ():
            content = self._tool_call(call, out) or content
        return content

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> bool:
        n = call.get("index", 0)
        function = call.get("function") or {}
        index = self._tools.get(n)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{self._id}_{n}",
                "name": function.get("name") or "",
                "input": {},
            }
            opened, index = self._ensure(f"tool:{n}", block)
            self._tools[n] = index
            out.append(opened)
        arguments = function.get("arguments")
        if not arguments:
            return False
        out.append(self._delta(index, {"type": "input_json_delta", "partial_json": arguments}))
        if isinstance(arguments, str):
            self._relayed.pieces.append(arguments)
        return True

    def finish(self) -> bytes:
        out = [] if self._started else [self._message_start()]
        out.append(self._close())
        # An upstream that sent no usage: the estimate (never zeros).
        usage = anthropic_usage(self._usage if self._relayed.complete else chat_usage(self.usage()))
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        out.append(event_bytes("message_delta", {"type": "message_delta", "delta": delta,
                                                 "usage": usage}))  # fmt: skip
        out.append(event_bytes("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def usage(self) -> Usage:
        return self._relayed.usage()

    def error(self, err: GatewayError) -> bytes:
        return error_event(err)
