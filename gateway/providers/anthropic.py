"""Anthropic's Messages API as an upstream.

Like the OpenAI provider: the official SDK (``anthropic.AsyncAnthropic``) for
auth, base URL and typed errors, on our aiohttp transport with
``max_retries=0`` (retries are the gateway's decision), and the raw event path
(``messages.with_streaming_response`` + ``httpx2.EventSource``) instead of
per-event SDK models (DESIGN.md, "SDK cost per chunk").

Stream format (https://docs.anthropic.com/en/api/messages-streaming): named
events ``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta``, ``message_stop``, ``ping`` and ``error``. ``ping`` is
dropped here; ``message_stop`` is yielded and ends the stream; a stream cut
before it raises :class:`~gateway.errors.UpstreamProtocolError`; an ``error``
event raises the GatewayError for its ``error.type``
(https://docs.anthropic.com/en/api/errors).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import anthropic
import httpx2

from ..config import AnthropicModel
from ..errors import GatewayError, UpstreamError
from .base import Dialect, UpstreamChunk
from .sdk_errors import SDKErrors, map_sdk_error
from .sse_stream import SDKEventStream, json_object
from .status import error_for_status
from .transport import sdk_timeout, upstream_http_client

_STATUS_OF_TYPE = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
    }
)
"""Anthropic ``error.type`` -> the HTTP status Anthropic documents for it."""


def error_for_type(error: object, retry_after: str | None = None) -> GatewayError:
    """The GatewayError for an Anthropic error object ``{"type", "message"}``.

    Used for ``event: error`` mid-stream, where the HTTP status is already 200
    and only ``error.type`` says what happened; unknown types are
    :class:`~gateway.errors.UpstreamError`.
    """
    kind, message = "api_error", "upstream error"
    if isinstance(error, dict):
        kind = str(error.get("type") or kind)
        message = str(error.get("message") or message)
    status = _STATUS_OF_TYPE.get(kind)
    if status is None:
        return UpstreamError(f"upstream error ({kind}): {message}")
    return error_for_status(status, f"{kind}: {message}", retry_after)


def _from_status(exc: anthropic.APIStatusError) -> GatewayError:
    retry_after = exc.response.headers.get("retry-after")
    body = exc.body
    if exc.status_code < 400 and isinstance(body, dict):
        # The SDK raises a mid-stream ``event: error`` as a status error with
        # the stream's 200; the error type is in the body (DESIGN.md).
        return error_for_type(body.get("error"), retry_after)
    return error_for_status(exc.status_code, exc.message, retry_after)


_SDK_ERRORS = SDKErrors(
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
    from_status=_from_status,
)


def map_error(exc: BaseException) -> GatewayError:
    """An anthropic SDK, httpx2 or aiohttp exception as a GatewayError (by type)."""
    return map_sdk_error(exc, _SDK_ERRORS)


class AnthropicStream(SDKEventStream):
    """Events of one upstream Messages stream; ends after ``message_stop``."""

    terminal = "message_stop"

    def __init__(self, response: Any) -> None:
        super().__init__(response, map_error)

    def decode(self, sse: httpx2.ServerSentEvent) -> UpstreamChunk | None:
        data = sse.data
        if not data:
            return None
        payload = json_object(data)
        name = sse.event if sse.event and sse.event != "message" else payload.get("type")
        if name == "ping":
            return None
        if name == "error":
            raise error_for_type(payload.get("error"))
        self.finished = name == "message_stop"
        return UpstreamChunk(data=data.encode(), payload=payload, event=name)


class AnthropicProvider:
    """A configured :class:`~gateway.config.AnthropicModel`.

    Request bodies are Messages API bodies
    (https://docs.anthropic.com/en/api/messages); ``model``, ``messages`` and
    ``max_tokens`` go through the SDK, every other field rides in
    ``extra_body`` unchanged, so unknown and newer fields reach the upstream.
    """

    kind = "anthropic"
    dialect: Dialect = "anthropic"

    def __init__(self, model: AnthropicModel, connect_timeout_s: float = 10.0) -> None:
        timeout = sdk_timeout(connect_timeout_s)
        self._model = model
        self._client = anthropic.AsyncAnthropic(
            api_key=model.api_key("ANTHROPIC_API_KEY") or "unset",
            base_url=model.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=upstream_http_client(model.upstream_buffer_bytes, timeout),
        )

    def _split(self, body: dict[str, Any]) -> tuple[Any, int, dict[str, Any]]:
        known = ("model", "messages", "max_tokens", "stream")
        extra = {k: v for k, v in body.items() if k not in known}
        return body.get("messages", []), body.get("max_tokens", 0), extra

    async def open_stream(self, body: dict[str, Any]) -> AnthropicStream:
        messages, max_tokens, extra = self._split(body)
        try:
            response = await self._client.messages.with_streaming_response.create(
                model=self._model.target_model,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                extra_body=extra,
            ).__aenter__()
        except Exception as exc:
            raise map_error(exc) from exc
        return AnthropicStream(response)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream's Message object (``{"type": "message", "content": [...]}``)."""
        messages, max_tokens, extra = self._split(body)
        try:
            raw = await self._client.messages.with_raw_response.create(
                model=self._model.target_model,
                messages=messages,
                max_tokens=max_tokens,
                stream=False,
                extra_body=extra,
            )
        except Exception as exc:
            raise map_error(exc) from exc
        return json_object(raw.http_response.content, "a response")

    async def aclose(self) -> None:
        await self._client.close()
