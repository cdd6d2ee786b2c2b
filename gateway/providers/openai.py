"""OpenAI and OpenAI-compatible upstreams (vLLM, Ollama, llama.cpp, ...).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``
(https://platform.openai.com/docs/api-reference/chat/create), on aiohttp
directly (:mod:`gateway.providers.http`). The body is the client's, with
``model`` set to the upstream model and ``stream`` set, the length cap under
the name the upstream honours (``max_tokens_field``), every other field
passed unchanged (unknown fields included). Stream format:
https://platform.openai.com/docs/api-reference/chat-streaming: ``data:``
events with ``chat.completion.chunk`` objects, ending with ``data: [DONE]``;
an ``{"error": ...}`` object mid-stream is the upstream failing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..config import OpenAIModel
from ..dialects.translate_request import with_length_field
from ..errors import UpstreamError
from ..split_body import Encoded, SplitBody
from .base import Dialect, UpstreamChunk, tuple_new
from .http import EventStream, UpstreamSessions, json_object, payload_type, post, read_json
from .query import with_query
from .sse_decoder import SSEEvent
from .status import MESSAGE_LIMIT

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_DONE = b"[DONE]"


class OpenAIStream(EventStream):
    """Chunks of one upstream response; ends at ``[DONE]``."""

    __slots__ = ()
    terminal = "[DONE]"

    def decode(self, event: SSEEvent) -> UpstreamChunk | None:
        data = event.data
        if data == _DONE:
            self.finished = True
            return None
        payload = json_object(data)
        error = payload.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            said = f": {message[:MESSAGE_LIMIT]}" if isinstance(message, str) else ""
            raise UpstreamError(
                f"The upstream provider failed mid-stream{said}", detail=f"error event: {error!r}"
            )
        return tuple_new(UpstreamChunk, (data, payload, None))


class _OpenAIEndpoint:
    """One endpoint of an OpenAI-compatible server: its URL, session and
    headers (``Authorization: Bearer`` when a key is configured); subclasses
    say which path, how the body is sent and how the stream is read."""

    kind = "openai"
    path: ClassVar[str]
    stream_class: ClassVar[type[EventStream]]

    def __init__(
        self, model: OpenAIModel, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
    ) -> None:
        self._model = model
        self._url = with_query(self._endpoint(model), self._query(model))
        self._session = sessions.get(self._url, model.upstream_buffer_bytes, connect_timeout_s)
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        self._headers.update(self._auth(model))
        self._headers.update(model.upstream_headers())
        self._json_headers = {**self._headers, "Accept": "application/json"}

    def _endpoint(self, model: OpenAIModel) -> str:
        """The URL requests go to, without the query."""
        return (model.base_url or DEFAULT_BASE_URL).rstrip("/") + self.path

    def _query(self, model: OpenAIModel) -> dict[str, str]:
        """Query parameters of every request: the model's ``query``."""
        return model.upstream_query()

    def _auth(self, model: OpenAIModel) -> dict[str, str]:
        """The key's header: ``Authorization: Bearer`` (none for a keyless server)."""
        key = model.api_key("OPENAI_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    takes_split_body = True
    """A :class:`~gateway.split_body.SplitBody` is sent as the client's bytes
    behind the fields :meth:`_body` sets (issue 26)."""

    def _body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        return {**body, "model": self._model.target_model, "stream": stream}

    def _encoded(self, body: dict[str, Any], stream: bool) -> dict[str, Any] | Encoded:
        out = self._body(body, stream)
        return body.encode(out) if isinstance(body, SplitBody) else out

    async def open_stream(self, body: dict[str, Any]) -> EventStream:
        response = await post(self._session, self._url, self._encoded(body, True), self._headers)
        return self.stream_class(response)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        data = self._encoded(body, False)
        response = await post(self._session, self._url, data, self._json_headers)
        return await read_json(response, self._model.max_response_bytes)

    async def aclose(self) -> None:
        return None  # the sessions belong to UpstreamSessions


class OpenAIProvider(_OpenAIEndpoint):
    """A configured :class:`~gateway.config.OpenAIModel`: ``{base_url}/chat/completions``."""

    dialect: Dialect = "openai"
    path = "/chat/completions"
    stream_class = OpenAIStream

    def _body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = with_length_field(super()._body(body, stream), self._model.length_field)
        if stream and self._model.stream_usage:
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        elif not stream:
            out.pop("stream_options", None)
        return out


RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStream(EventStream):
    """Events of one native Responses stream (``event: response.*``); ends
    after ``response.completed``, ``response.incomplete`` or ``response.failed``
    (https://platform.openai.com/docs/api-reference/responses-streaming).
    An ``error`` event is the upstream failing."""

    __slots__ = ()
    terminal = "response.completed"

    def decode(self, event: SSEEvent) -> UpstreamChunk | None:
        payload = json_object(event.data)
        name = event.event or payload_type(payload)
        if name == "error":
            message = payload.get("message")
            said = f": {message[:MESSAGE_LIMIT]}" if isinstance(message, str) else ""
            raise UpstreamError(
                f"The upstream provider failed mid-stream{said}", detail=f"error event: {payload!r}"
            )
        self.finished = name in RESPONSES_TERMINAL
        return tuple_new(UpstreamChunk, (event.data, payload, name))


class OpenAIResponsesProvider(_OpenAIEndpoint):
    """The native Responses API of a :class:`~gateway.config.OpenAIModel` with
    ``responses_api = "native"``: ``POST {base_url}/responses``, the client's
    body with ``model`` set, relayed as is (unknown fields included)."""

    dialect: Dialect = "responses"
    path = "/responses"
    stream_class = ResponsesStream
