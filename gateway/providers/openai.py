"""OpenAI and OpenAI-compatible upstreams (vLLM, Ollama, llama.cpp, ...).

Uses the official SDK for what it is good at (auth, base URL, request
shaping, typed errors) with its aiohttp transport and ``max_retries=0``
(retries are the gateway's decision), and reads the response as raw SSE via
``with_streaming_response`` + ``httpx2.EventSource``: no per-chunk pydantic
models, which cost 10-20x the raw path (DESIGN.md, "SDK cost per chunk").
Stream format: https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from ..config import OpenAIModel
from ..errors import GatewayError, UpstreamError
from .base import Dialect, UpstreamChunk
from .sdk_errors import SDKErrors, map_sdk_error
from .sse_stream import SDKEventStream, json_object
from .status import error_for_status
from .transport import sdk_timeout, upstream_http_client

_DONE = "[DONE]"


def _from_status(exc: openai.APIStatusError) -> GatewayError:
    return error_for_status(exc.status_code, exc.message, exc.response.headers.get("retry-after"))


_SDK_ERRORS = SDKErrors(
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
    from_status=_from_status,
)


def map_error(exc: BaseException) -> GatewayError:
    """An SDK or transport exception as a GatewayError (by type, not text)."""
    return map_sdk_error(exc, _SDK_ERRORS)


class OpenAIStream(SDKEventStream):
    """Chunks of one upstream response; ends at ``[DONE]``."""

    terminal = _DONE

    def __init__(self, response: Any) -> None:
        super().__init__(response, map_error)

    def decode(self, sse: httpx2.ServerSentEvent) -> UpstreamChunk | None:
        data = sse.data
        if data == _DONE:
            self.finished = True
            return None
        payload = json_object(data)
        error = payload.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"upstream error mid-stream: {message}")
        return UpstreamChunk(data=data.encode(), payload=payload)


class OpenAIProvider:
    """A configured :class:`~gateway.config.OpenAIModel`."""

    kind = "openai"
    dialect: Dialect = "openai"

    def __init__(self, model: OpenAIModel, connect_timeout_s: float = 10.0) -> None:
        timeout = sdk_timeout(connect_timeout_s)
        self._model = model
        self._client = openai.AsyncOpenAI(
            api_key=model.api_key("OPENAI_API_KEY") or "unset",
            base_url=model.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=upstream_http_client(model.upstream_buffer_bytes, timeout),
        )

    def _split(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # Known fields go through the SDK; everything else rides in extra_body
        # unchanged, so unknown and newer fields reach the upstream as sent.
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        return body.get("messages", []), extra

    async def open_stream(self, body: dict[str, Any]) -> OpenAIStream:
        messages, extra = self._split(body)
        if self._model.stream_usage:
            options = dict(extra.get("stream_options") or {})
            options["include_usage"] = True
            extra["stream_options"] = options
        try:
            response = await self._client.chat.completions.with_streaming_response.create(
                model=self._model.target_model, messages=messages, stream=True, extra_body=extra
            ).__aenter__()
        except Exception as exc:
            raise map_error(exc) from exc
        return OpenAIStream(response)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages, extra = self._split(body)
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self._model.target_model, messages=messages, stream=False, extra_body=extra
            )
        except Exception as exc:
            raise map_error(exc) from exc
        return json_object(raw.http_response.content, "a response")

    async def aclose(self) -> None:
        await self._client.close()
