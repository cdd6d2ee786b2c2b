"""The Anthropic Messages dialect: request validation, usage, SSE encoding.

Request shape: https://docs.anthropic.com/en/api/messages. As with the OpenAI
dialect, only what the gateway relies on is validated; every other field is
kept as sent and passed upstream unchanged on the Anthropic-to-Anthropic path.
Stream format: https://docs.anthropic.com/en/api/messages-streaming (named
events, each ``event: <type>`` + ``data: <json>``). Errors:
https://docs.anthropic.com/en/api/errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import GatewayError
from ..providers.base import UpstreamChunk, tuple_new
from ..split_body import SplitBody
from .frames import EMPTY, Frame, Relayed, Usage, data_lines, token_count
from .openai import MAX_MESSAGES, MAX_TOKENS_LIMIT, check_bulk, invalid_from

_Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT, strict=True)]
_Unit = Annotated[float, Field(ge=0, le=1, strict=False)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ContentBlock(_Loose):
    """One content block (``text``, ``image``, ``tool_use``, ``tool_result``, ...)."""

    type: str = Field(min_length=1)


class MessageParam(_Loose):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class MessagesRequest(_Loose):
    """The validated view of a Messages request body."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageParam] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: _Tokens
    system: str | list[ContentBlock] | None = None
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: _Unit | None = None
    top_p: _Unit | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class MessagesHead(MessagesRequest):
    """A large request's small fields (:class:`~gateway.split_body.SplitBody`):
    its bulk fields are checked by their JSON type only and validated by the
    upstream."""

    messages: Any = None
    system: Any = None
    tools: Any = None


def parse_messages_request(body: dict[str, Any]) -> MessagesRequest:
    """Validate ``body``. Raises :class:`~gateway.errors.InvalidRequest` (400).

    A :class:`~gateway.split_body.SplitBody` with bulk fields is validated
    without decoding them (:class:`MessagesHead`)."""
    model = MessagesRequest
    if isinstance(body, SplitBody) and body.bulk:
        check_bulk(body, ("messages",), ("messages", "tools"))
        body = dict(body)  # the small fields
        model = MessagesHead if "messages" not in body else model
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise invalid_from(err) from None


def _int(value: object) -> int | None:
    return token_count(value)


def input_tokens_of(usage: dict[str, Any]) -> int | None:
    """All prompt tokens of an Anthropic ``usage``: ``input_tokens`` excludes
    the cached ones (``cache_read_input_tokens``, ``cache_creation_input_tokens``)."""
    base = _int(usage.get("input_tokens"))
    if base is None:
        return None
    cached = (_int(usage.get(k)) or 0 for k in ("cache_read_input_tokens",
                                                "cache_creation_input_tokens"))  # fmt: skip
    return base + sum(cached)


def cache_read_of(usage: dict[str, Any]) -> int:
    """An Anthropic ``usage``'s ``cache_read_input_tokens`` (0 when absent)."""
    return _int(usage.get("cache_read_input_tokens")) or 0


def usage_of(payload: dict[str, Any]) -> Usage | None:
    """``usage`` of a Message object, if it carries one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        input_tokens=input_tokens_of(usage),
        output_tokens=_int(usage.get("output_tokens")),
        cached_input_tokens=cache_read_of(usage),
    )


def is_content_delta(payload: dict[str, Any]) -> bool:
    """Whether a ``content_block_delta`` carries content: a non-empty
    ``text_delta``, ``input_json_delta`` or ``thinking_delta``."""
    delta = payload.get("delta")
    if not isinstance(delta, dict):
        return False
    kind = delta.get("type")
    if kind == "text_delta":
        return bool(delta.get("text"))
    if kind == "input_json_delta":
        return bool(delta.get("partial_json"))
    if kind == "thinking_delta":
        return bool(delta.get("thinking"))
    return False


def event_bytes(name: str, payload: dict[str, Any]) -> bytes:
    """One named SSE event: ``event: <name>\\ndata: <compact json>\\n\\n``."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_event(err: GatewayError) -> bytes:
    """``event: error`` with ``{"type": "error", "error": {"type", "message"}}``."""
    return event_bytes("error", err.anthropic_body())


MESSAGE_STOP = event_bytes("message_stop", {"type": "message_stop"})


class AnthropicPassthrough:
    """Anthropic upstream events to an Anthropic client, data bytes unchanged.

    ``ping`` never arrives (the provider drops it). ``message_stop`` is held
    back and written by :meth:`finish`, so a stream the relay ends on an
    error never carries it. Usage: input tokens from ``message_start``,
    output tokens from ``message_delta`` (cumulative, per the stream docs).
    """

    __slots__ = ("_cached", "_input_tokens", "_relayed", "_stop")

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self._input_tokens: int | None = None
        self._cached = 0
        self._stop = MESSAGE_STOP
        self._relayed = Relayed(body)

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        name = chunk.event or str(payload.get("type", ""))
        raw = chunk.data
        if 10 in raw:  # b"\n" (an int is a memchr; a bytes needle costs ~8x)
            raw = data_lines(raw)
        if name == "message_stop":
            self._stop = b"event: message_stop\ndata: " + raw + b"\n\n"
            return EMPTY
        data = b"event: " + name.encode() + b"\ndata: " + raw + b"\n\n"
        if name == "content_block_delta":
            content = is_content_delta(payload)
            if content:
                delta = payload["delta"]
                text = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
                if isinstance(text, str):
                    self._relayed.pieces.append(text)
            return tuple_new(Frame, (data, content, None))
        if name == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._input_tokens = input_tokens_of(usage)
                self._cached = cache_read_of(usage)
                usage_now = Usage(input_tokens=self._input_tokens, cached_input_tokens=self._cached)
                return self._report(data, usage_now)
        elif name == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                if _int(usage.get("input_tokens")) is not None:
                    self._input_tokens = input_tokens_of(usage)
                    self._cached = cache_read_of(usage) or self._cached
                output = _int(usage.get("output_tokens"))
                usage_now = Usage(self._input_tokens, output, cached_input_tokens=self._cached)
                return self._report(data, usage_now)
        return tuple_new(Frame, (data, False, None))

    def _report(self, data: bytes, usage: Usage) -> Frame:
        self._relayed.report(usage)
        return Frame(data, usage=usage)

    def finish(self) -> bytes:
        return self._stop

    def usage(self) -> Usage:
        return self._relayed.usage()

    def error(self, err: GatewayError) -> bytes:
        return error_event(err)
