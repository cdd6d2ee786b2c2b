"""Anthropic's Messages API as an upstream.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``
(https://docs.anthropic.com/en/api/messages), on aiohttp directly
(:mod:`gateway.providers.http`). Stream format
(https://docs.anthropic.com/en/api/messages-streaming): named events
``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta``, ``message_stop``, ``ping`` and ``error``. ``ping`` is
dropped here; ``message_stop`` is yielded and ends the stream; a stream cut
before it raises :class:`~gateway.errors.UpstreamProtocolError`; an ``error``
event raises the GatewayError for its ``error.type``
(https://docs.anthropic.com/en/api/errors).
"""

from __future__ import annotations

from typing import Any

from ..config import AnthropicModel
from ..split_body import Encoded, SplitBody
from .base import Dialect, UpstreamChunk, tuple_new
from .http import EventStream, UpstreamSessions, json_object, payload_type, post, read_json
from .query import with_query
from .sse_decoder import SSEEvent
from .status import error_for_anthropic_type

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header (the current stable API version)."""


class AnthropicStream(EventStream):
    """Events of one upstream Messages stream; ends after ``message_stop``."""

    __slots__ = ()
    terminal = "message_stop"

    def decode(self, event: SSEEvent) -> UpstreamChunk | None:
        payload = json_object(event.data)
        name = event.event or payload_type(payload)
        if name == "ping":
            return None
        if name == "error":
            raise error_for_anthropic_type(payload.get("error"))
        self.finished = name == "message_stop"
        return tuple_new(UpstreamChunk, (event.data, payload, name))


class AnthropicProvider:
    """A configured :class:`~gateway.config.AnthropicModel`.

    Request bodies are Messages API bodies; ``model`` and ``stream`` are set
    here, every other field is sent unchanged, so unknown and newer fields
    reach the upstream.
    """

    kind = "anthropic"
    dialect: Dialect = "anthropic"

    def __init__(
        self, model: AnthropicModel, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
    ) -> None:
        self._model = model
        base = (model.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = with_query(base + "/v1/messages", model.upstream_query())
        self._session = sessions.get(self._url, model.upstream_buffer_bytes, connect_timeout_s)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        key = model.api_key("ANTHROPIC_API_KEY")
        if key:
            self._headers["x-api-key"] = key
        self._headers.update(model.upstream_headers())
        self._json_headers = {**self._headers, "Accept": "application/json"}

    takes_split_body = True
    """A :class:`~gateway.split_body.SplitBody` is sent as the client's bytes
    behind ``model`` and ``stream`` (issue 26)."""

    def _body(self, body: dict[str, Any], stream: bool) -> dict[str, Any] | Encoded:
        out = {**body, "model": self._model.target_model, "stream": stream}
        return body.encode(out) if isinstance(body, SplitBody) else out

    async def open_stream(self, body: dict[str, Any]) -> AnthropicStream:
        response = await post(self._session, self._url, self._body(body, True), self._headers)
        return AnthropicStream(response)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream's Message object (``{"type": "message", "content": [...]}``)."""
        response = await post(self._session, self._url, self._body(body, False), self._json_headers)
        return await read_json(response, self._model.max_response_bytes)

    async def aclose(self) -> None:
        return None  # the sessions belong to UpstreamSessions
