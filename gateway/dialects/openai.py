"""The OpenAI Chat Completions dialect: request validation and SSE encoding.

Request shape: https://platform.openai.com/docs/api-reference/chat/create.
Only what the gateway relies on is validated; every other field is kept as
sent and passed upstream unchanged (unknown fields included), so newer API
features need no gateway release. Stream format:
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import GatewayError, InvalidRequest
from ..providers.base import UpstreamChunk, tuple_new
from ..split_body import SplitBody
from .frames import EMPTY, Frame, Relayed, Usage, data_lines, token_count

MAX_MESSAGES = 10_000
MAX_TOKENS_LIMIT = 1_000_000

_Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT, strict=True)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class FunctionName(_Loose):
    name: str


class Tool(_Loose):
    """A declared tool: its shape is checked, its fields pass upstream as sent."""

    type: str
    function: FunctionName | None = None


class NamedToolChoice(_Loose):
    type: str
    function: FunctionName | None = None


class StreamOptions(_Loose):
    include_usage: bool = False


class ChatCompletionRequest(_Loose):
    """The validated view of a Chat Completions request body."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: _Tokens | None = None
    max_completion_tokens: _Tokens | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def invalid_from(err: ValidationError) -> InvalidRequest:
    """The first validation error as a 400 naming the offending parameter."""
    first = err.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    where = f"'{param}'" if param else "request body"
    return InvalidRequest(f"Invalid value for {where}: {first['msg']}", param=param)


class ChatCompletionHead(ChatCompletionRequest):
    """A large request's small fields (:class:`~gateway.split_body.SplitBody`):
    its bulk fields are checked by their JSON type only (their first byte)
    and validated by the upstream."""

    messages: Any = None
    tools: Any = None


def check_bulk(body: SplitBody, required: tuple[str, ...], arrays: tuple[str, ...]) -> None:
    """The bulk fields of a split body: ``required`` ones present, ``arrays``
    JSON arrays. Raises :class:`~gateway.errors.InvalidRequest` naming the field."""
    for key in required:
        if key not in body and key not in body.bulk:
            raise InvalidRequest(f"Missing required parameter: '{key}'", param=key)
    for key in arrays:
        first = body.first_byte(key)
        if first is not None and first != ord("["):
            raise InvalidRequest(f"Invalid value for '{key}': expected an array", param=key)


def parse_chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    """Validate ``body``. Raises :class:`~gateway.errors.InvalidRequest`.

    A :class:`~gateway.split_body.SplitBody` with bulk fields is validated
    without decoding them (:class:`ChatCompletionHead`)."""
    model = ChatCompletionRequest
    if isinstance(body, SplitBody) and body.bulk:
        check_bulk(body, ("messages",), ("messages", "tools"))
        body = dict(body)  # the small fields
        model = ChatCompletionHead if "messages" not in body else model
    try:
        chat = model.model_validate(body)
    except ValidationError as err:
        raise invalid_from(err) from None
    if chat.stream_options is not None and not chat.stream:  # OpenAI's message, and its 400
        msg = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise InvalidRequest(msg, param="stream_options")
    return chat


_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


def _has_content(choices: list[Any], pieces: list[str]) -> bool:
    """Whether a chunk's choices carry content (text, reasoning, refusal,
    tool-call arguments: what TTFT and ITL time); their text goes to ``pieces``."""
    content = False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not delta:
            continue
        if len(delta) == 1:  # the common chunk: {"content": "..."}, one token
            text = delta.get("content")
            if text and isinstance(text, str):
                pieces.append(text)
                content = True
                continue
        for field in _TEXT_FIELDS:
            text = delta.get(field)
            if text:
                content = True
                if isinstance(text, str):
                    pieces.append(text)
        for call in delta.get("tool_calls") or ():
            content = True
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str) and arguments:
                pieces.append(arguments)
    return content


def chat_usage(usage: Usage) -> dict[str, int]:
    """A Chat Completions ``usage`` object for ``usage`` (missing counts as 0)."""
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def usage_of(payload: dict[str, Any]) -> Usage | None:
    """``usage`` of a chunk or completion, if it carries one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=token_count(prompt),
        output_tokens=token_count(completion),
        cached_input_tokens=token_count(cached) or 0,
    )


def error_event(err: GatewayError) -> bytes:
    """The SSE event that ends a failed Chat Completions stream: the OpenAI
    error object as its data, and never ``data: [DONE]`` after it (the SDKs
    raise on it instead of reporting success). The one place these bytes
    are written."""
    return b"data: " + orjson.dumps(err.openai_body()) + b"\n\n"


class OpenAIPassthrough:
    """OpenAI-dialect chunks to an OpenAI-dialect client, byte for byte.

    Two changes: a usage-only chunk the gateway asked for on its own
    (``stream_usage``) is not relayed to a client that did not ask for it;
    and when the client asked for one (``stream_options.include_usage``) and
    the upstream sent none, :meth:`finish` writes one with the estimated
    counts (:class:`~gateway.dialects.frames.Relayed`) before ``[DONE]``.
    ``body`` is the client's request (the input estimate).
    """

    __slots__ = ("_first", "_include_usage", "_relayed")

    def __init__(self, include_usage: bool, body: dict[str, Any] | None = None) -> None:
        self._include_usage = include_usage
        self._relayed = Relayed(body)
        self._first: dict[str, Any] | None = None

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        if self._first is None and payload.get("id"):
            self._first = payload  # not Azure's prompt-filter chunk (empty id and model)
        choices = payload.get("choices") or []
        usage = usage_of(payload) if payload.get("usage") else None
        if usage is not None:
            self._relayed.report(usage)
            if not choices and not self._include_usage:
                return Frame(b"", usage=usage)
        elif not choices and not payload:
            return EMPTY
        data = chunk.data
        if 10 in data:  # b"\n" (an int is a memchr; a bytes needle costs ~8x)
            data = data_lines(data)
        content = _has_content(choices, self._relayed.pieces)
        return tuple_new(Frame, (b"data: " + data + b"\n\n", content, usage))

    def usage(self) -> Usage:
        return self._relayed.usage()

    def finish(self) -> bytes:
        if not self._include_usage or self._relayed.reported is not None:
            return b"data: [DONE]\n\n"
        usage = self._relayed.usage()
        first = self._first or {}
        chunk = {
            "id": first.get("id", ""),
            "object": "chat.completion.chunk",
            "created": first.get("created", 0),
            "model": first.get("model", ""),
            "choices": [],
            "usage": chat_usage(usage),
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return error_event(err)
