"""Google Gemini as an upstream: the Gemini API, or Vertex AI.

Requests (https://ai.google.dev/api/generate-content):
``POST {base}/models/{model}:streamGenerateContent?alt=sse`` (SSE: one
``data:`` event per ``GenerateContentResponse``; the body simply ends after
the last one) and ``POST {base}/models/{model}:generateContent`` (one JSON
object). ``{base}`` is ``https://generativelanguage.googleapis.com/v1beta``
with the key in ``x-goog-api-key`` (``GEMINI_API_KEY``), or Vertex AI's
project path with a bearer token from Google credentials
(:mod:`gateway.providers.gemini_vertex`); ``base_url`` replaces it.

The provider speaks the ``openai`` dialect: it takes a Chat Completions body
and sends its translation (:func:`~gateway.dialects.gemini_request.gemini_from_chat`),
and it yields each Gemini event translated into ``chat.completion.chunk``
objects (:class:`~gateway.dialects.gemini_upstream.ChunksFromGemini`), so
every client dialect is served through the existing bridge. Gemini has no
terminal marker: the event with a candidate's ``finishReason`` (or a
blocked prompt) ends the stream, and a body that ends before it is an
:class:`~gateway.errors.UpstreamProtocolError`. An ``{"error": {...}}``
event mid-stream raises the GatewayError for its ``code`` (its HTTP status).
Retryable statuses (429, 500, 503, 504) are retried and fall back like any
provider's (:func:`~gateway.providers.status.error_for_status`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from ..config import GeminiModel
from ..dialects.gemini_request import gemini_from_chat
from ..dialects.gemini_upstream import ChunksFromGemini, completion_from_gemini
from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from .base import Dialect, UpstreamChunk
from .gemini_vertex import VertexTokens, vertex_base_url
from .http import EventStream, UpstreamSessions, json_object, post, read_json
from .sse_decoder import SSEEvent
from .status import MESSAGE_LIMIT, error_for_status

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


def gemini_error(error: object) -> GatewayError:
    """The GatewayError for a Gemini error object ``{"code", "message",
    "status"}`` (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes)
    sent in a stream, where the HTTP status is already 200."""
    if not isinstance(error, dict):
        return UpstreamError("The upstream provider failed mid-stream", detail=repr(error)[:2000])
    code, message, status = error.get("code"), error.get("message"), error.get("status")
    text = message if isinstance(message, str) else None
    kind = status if isinstance(status, str) else None
    detail = f"upstream error event: {error!r}"[:2000]
    if isinstance(code, int) and 400 <= code < 600:
        return error_for_status(code, text, kind=kind, detail=detail)
    said = f": {text[:MESSAGE_LIMIT]}" if text else ""
    return UpstreamError(f"The upstream provider failed mid-stream{said}", detail=detail)


MALFORMED = (AttributeError, TypeError, KeyError, ValueError, IndexError)
"""What the translation raises on an upstream value of the wrong shape
(it checks types as it reads; this is the net under it)."""


def unreadable(exc: Exception, data: bytes) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        "The upstream sent an event the gateway cannot read",
        detail=f"{type(exc).__name__}: {exc}; event {data[:200]!r}",
    )


class GeminiStream(EventStream):
    """Gemini events of one response, yielded as ``chat.completion.chunk``
    objects (``data`` is the chunk serialized once, for the passthrough
    encoders). One event may become two chunks (the content with its
    ``finish_reason``, then the usage chunk): the first is queued, the
    last returned."""

    __slots__ = ("_chunks",)
    terminal = "a finishReason"

    def __init__(self, response: aiohttp.ClientResponse, model: str) -> None:
        super().__init__(response)
        self._chunks = ChunksFromGemini(model)

    def decode(self, event: SSEEvent) -> UpstreamChunk | None:
        payload = json_object(event.data)
        if "error" in payload:
            raise gemini_error(payload["error"])
        try:
            chunks, ended = self._chunks.chunks(payload)
            encoded = [UpstreamChunk(orjson.dumps(c), c) for c in chunks]
        except MALFORMED as exc:  # orjson.JSONEncodeError (nesting) is a TypeError
            raise unreadable(exc, event.data) from None
        if ended:
            self.finished = True
        if not encoded:
            return None
        self._pending.extend(encoded[:-1])
        return encoded[-1]


class GeminiProvider:
    """A configured :class:`~gateway.config.GeminiModel`."""

    kind = "gemini"
    dialect: Dialect = "openai"

    def __init__(
        self,
        model: GeminiModel,
        sessions: UpstreamSessions,
        connect_timeout_s: float = 10.0,
        tokens: VertexTokens | None = None,
    ) -> None:
        self._model = model
        if model.base_url:
            base = model.base_url.rstrip("/")
        elif model.vertex_project:
            base = vertex_base_url(model.vertex_project, model.vertex_location)
        else:
            base = DEFAULT_BASE_URL
        name = model.target_model.removeprefix("models/")
        self.stream_url = f"{base}/models/{name}:streamGenerateContent?alt=sse"
        self.url = f"{base}/models/{name}:generateContent"
        self._session = sessions.get(self.url, model.upstream_buffer_bytes, connect_timeout_s)
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        self._tokens: VertexTokens | None = None
        if model.vertex_project:
            self._tokens = tokens or VertexTokens()
        else:
            key = model.api_key()
            if key:
                self._headers["x-goog-api-key"] = key

    async def headers(self, accept: str) -> dict[str, str]:
        """The request headers (a fresh Vertex token when on Vertex)."""
        headers = {**self._headers, "Accept": accept}
        if self._tokens is not None:
            headers["Authorization"] = f"Bearer {await self._tokens.token()}"
        return headers

    async def open_stream(self, body: dict[str, Any]) -> GeminiStream:
        headers = await self.headers("text/event-stream")
        response = await post(self._session, self.stream_url, gemini_from_chat(body), headers)
        return GeminiStream(response, self._model.target_model)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The response as a ``chat.completion`` object."""
        headers = await self.headers("application/json")
        response = await post(self._session, self.url, gemini_from_chat(body), headers)
        payload = await read_json(response, self._model.max_response_bytes)
        if "error" in payload:
            raise gemini_error(payload["error"])
        try:
            return completion_from_gemini(payload, self._model.target_model)
        except MALFORMED as exc:
            raise unreadable(exc, b"") from None

    async def aclose(self) -> None:
        return None  # the sessions belong to UpstreamSessions
