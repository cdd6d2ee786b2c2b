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
from ..providers.base import UpstreamChunk
from .frames import EMPTY, Frame, Usage, data_lines

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


def parse_chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    """Validate ``body``. Raises :class:`~gateway.errors.InvalidRequest`."""
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as err:
        raise invalid_from(err) from None
    if chat.stream_options is not None and not chat.stream:  # OpenAI's message, and its 400
        msg = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise InvalidRequest(msg, param="stream_options")
    return chat


def _has_content(choices: list[Any]) -> bool:
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not delta:
            continue
        if (
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("tool_calls")
            or delta.get("refusal")
        ):
            return True
    return False


def usage_of(payload: dict[str, Any]) -> Usage | None:
    """``usage`` of a chunk or completion, if it carries one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(
        input_tokens=prompt if isinstance(prompt, int) else None,
        output_tokens=completion if isinstance(completion, int) else None,
    )


def error_event(err: GatewayError) -> bytes:
    """The SSE event that ends a failed Chat Completions stream: the OpenAI
    error object as its data, and never ``data: [DONE]`` after it (the SDKs
    raise on it instead of reporting success). The one place these bytes
    are written."""
    return b"data: " + orjson.dumps(err.openai_body()) + b"\n\n"


class OpenAIPassthrough:
    """OpenAI-dialect chunks to an OpenAI-dialect client, byte for byte.

    The one change: a usage-only chunk the gateway asked for on its own
    (``stream_usage``) is not relayed to a client that did not ask for it.
    """

    __slots__ = ("_include_usage",)

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage

    def encode(self, chunk: UpstreamChunk) -> Frame:
        payload = chunk.payload
        choices = payload.get("choices") or []
        usage = usage_of(payload) if payload.get("usage") else None
        if not choices and usage is not None and not self._include_usage:
            return Frame(b"", usage=usage)
        if not choices and usage is None and not payload:
            return EMPTY
        data = chunk.data
        if 10 in data:  # b"\n" (an int is a memchr; a bytes needle costs ~8x)
            data = data_lines(data)
        return Frame(b"data: " + data + b"\n\n", _has_content(choices), usage)

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return error_event(err)
