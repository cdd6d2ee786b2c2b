"""AWS Bedrock's Converse API as an upstream.

``POST {endpoint}/model/{modelId}/converse-stream`` (ConverseStream,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html)
and ``POST {endpoint}/model/{modelId}/converse`` (Converse,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html),
the endpoint ``https://bedrock-runtime.{region}.amazonaws.com`` unless the
model's ``base_url`` names another; on aiohttp directly, with the sessions,
bounds and trust rules of :mod:`gateway.providers.http`. Authentication:
:mod:`gateway.providers.bedrock_auth` (SigV4 or a Bedrock API key).

The provider speaks the ``anthropic`` dialect: a request arrives as a
Messages body (the bridge translated it from the client's dialect) and goes
out as a Converse body (:mod:`gateway.providers.bedrock_request`); the
response body, AWS's binary event stream, is decoded incrementally and
bounded (:mod:`gateway.providers.eventstream`, ``max_message_bytes``) and
its events become Anthropic stream events
(:mod:`gateway.providers.bedrock_stream`), so every client dialect is served
by the existing encoders. A non-streaming Converse response becomes a
Message (:mod:`gateway.providers.bedrock_response`).

Errors: a non-2xx answer is mapped by status (429 ``ThrottlingException``
and ``ModelNotReadyException``, 500, 503 are retryable before the first
token), with the service's ``message`` and error type
(``x-amzn-ErrorType``); an exception message in the stream is the
GatewayError of its type; a stream cut before its ``metadata`` event (the
last, with the usage: the terminal marker here) is an
:class:`~gateway.errors.UpstreamProtocolError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from ..config import BedrockModel
from ..errors import GatewayError, UpstreamProtocolError
from .base import Dialect, UpstreamChunk
from .bedrock_auth import BearerAuth, SigV4
from .bedrock_request import converse_body
from .bedrock_response import message_from_converse
from .bedrock_stream import ConverseEvents
from .eventstream import EventStreamDecoder
from .http import (
    ERROR_BODY_LIMIT,
    ERROR_BODY_TIMEOUT_S,
    RELEASE_WAIT_S,
    UpstreamSessions,
    error_for_exception,
    post,
    read_json,
)
from .status import error_for_status

EVENT_STREAM = "application/vnd.amazon.eventstream"
JSON_HEADERS = {"Content-Type": "application/json"}


def endpoint(region: str) -> str:
    """Bedrock Runtime's public endpoint in ``region``."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


class BedrockStream:
    """Anthropic events of one ConverseStream response; see
    :class:`~gateway.providers.base.UpstreamStream`. Cancel-safe as
    :class:`~gateway.providers.http.EventStream`: decoded chunks wait in a
    queue, and an error raised while decoding goes out after them."""

    __slots__ = ("_decoder", "_error", "_events", "_pending", "_response")

    def __init__(
        self, response: aiohttp.ClientResponse, model: str, max_message_bytes: int
    ) -> None:
        ctype = response.headers.get("Content-Type", "")
        if not ctype.startswith(EVENT_STREAM):
            response.close()
            raise UpstreamProtocolError(
                "The upstream did not answer with an event stream",
                detail=f"Content-Type: {ctype!r}",
            )
        self._response = response
        self._decoder = EventStreamDecoder(max_message_bytes)
        self._events = ConverseEvents(model)
        self._pending: deque[UpstreamChunk] = deque()
        self._error: GatewayError | None = None

    async def next(self) -> UpstreamChunk | None:
        """The next chunk; None after ``message_stop``. Raises GatewayError
        (after every chunk decoded before the failure)."""
        pending = self._pending
        events = self._events
        while not pending:
            if self._error is not None:
                raise self._error
            if events.finished:
                return None
            try:
                data = await self._response.content.readany()
            except aiohttp.ClientError as exc:
                raise error_for_exception(exc) from exc
            out: list[UpstreamChunk] = []
            try:
                if data:
                    for message in self._decoder.feed(data):
                        events.chunks(message, out)
                        if events.finished:
                            break
                else:
                    self._decoder.end()
                    raise UpstreamProtocolError(
                        "The upstream response ended before the stream was complete",
                        detail="EOF before the metadata event",
                    )
            except GatewayError as err:
                self._error = err
            pending.extend(out)
        return pending.popleft()

    def close(self) -> None:
        """Close the upstream connection now (synchronous, idempotent)."""
        self._response.close()

    def release(self) -> None:
        """The stream completed: keep the connection (as ``EventStream.release``)."""
        response = self._response
        if not response.content.is_eof():
            asyncio.get_running_loop().call_later(RELEASE_WAIT_S, response.close)


class BedrockProvider:
    """A configured :class:`~gateway.config.BedrockModel`; see the module docstring."""

    kind = "bedrock"
    dialect: Dialect = "anthropic"

    def __init__(
        self, model: BedrockModel, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
    ) -> None:
        self._model = model
        region = model.aws_region
        base = (model.base_url or endpoint(region)).rstrip("/")
        self._base = base + "/model/" + quote(model.target_model, safe="") + "/"
        self._session = sessions.get(base, model.upstream_buffer_bytes, connect_timeout_s)
        token = model.api_key()
        self._auth: BearerAuth | SigV4
        if model.auth == "bearer" or (model.auth == "auto" and token):
            self._auth = BearerAuth(token)
        else:
            self._auth = SigV4(region, model.profile)

    async def _post(self, action: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """Sign and send; the headers are the ones boto3 sends and signs
        (``Content-Type``, ``X-Amz-Date``, ``Authorization``; no ``Accept``)."""
        url = self._base + action
        data = orjson.dumps(converse_body(body))
        headers = await self._auth.headers(url, data, JSON_HEADERS)
        # Sent exactly as signed: the URL is not re-quoted.
        return await post(
            self._session, URL(url, encoded=True), data, headers, errors=error_for_response
        )

    async def open_stream(self, body: dict[str, Any]) -> BedrockStream:
        response = await self._post("converse-stream", body)
        return BedrockStream(response, self._model.target_model, self._model.max_message_bytes)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Converse response as an Anthropic Message object."""
        response = await self._post("converse", body)
        payload = await read_json(response, self._model.max_response_bytes)
        return message_from_converse(payload, self._model.target_model)

    async def aclose(self) -> None:
        self._auth.close()  # the sessions belong to UpstreamSessions


async def error_for_response(response: aiohttp.ClientResponse) -> GatewayError:
    """The GatewayError for a non-2xx Bedrock response: its status, the
    body's ``message`` and the error type (``x-amzn-ErrorType`` up to its
    ``:``, e.g. ``ThrottlingException``)."""
    body = b""
    try:
        async with asyncio.timeout(ERROR_BODY_TIMEOUT_S):
            body = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, TimeoutError):
        pass
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    message = None
    if isinstance(payload, dict):
        raw = payload.get("message", payload.get("Message"))
        message = raw if isinstance(raw, str) else None
    kind = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0][:100] or None
    return error_for_status(
        response.status,
        message,
        response.headers.get("Retry-After"),
        kind=kind,
        detail=f"upstream {response.status} from {response.method} {response.url}: {body[:2000]!r}",
    )
