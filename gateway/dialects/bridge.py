"""Between a client's dialect and an upstream's: request bodies, stream
encoders and non-streaming responses. Same-dialect paths are passthrough.

Every function takes ``client`` (the dialect the client speaks) and
``upstream`` (the dialect of the provider that serves the request). The
cross-dialect translations live in ``translate_request``,
``translate_stream`` and ``translate_response``; docs/anthropic.md lists the
fields that do not survive them.
"""

from __future__ import annotations

from typing import Any, Literal

from ..providers.base import Dialect
from .anthropic import AnthropicPassthrough
from .frames import StreamEncoder
from .gemini_client import GeminiFromOpenAI, gemini_from_completion
from .openai import OpenAIPassthrough
from .responses import chat_from_responses, response_from_completion
from .translate_request import anthropic_from_openai, openai_from_anthropic
from .translate_response import anthropic_from_openai_completion, openai_from_anthropic_message
from .translate_responses import (
    DEFAULT_MAX_OUTPUT_BYTES,
    Chained,
    ResponsesFromChat,
    ResponsesPassthrough,
)
from .translate_stream import AnthropicFromOpenAI, OpenAIFromAnthropic

ClientDialect = Literal["openai", "anthropic", "responses", "gemini"]
"""What a client speaks: a provider dialect, or OpenAI's Responses API (served
through the Chat Completions dialect), or Gemini's ``generateContent``
(its route translates the body to Chat Completions first:
:mod:`gateway.api.gemini`)."""


def upstream_body(client: ClientDialect, upstream: Dialect, body: dict[str, Any]) -> dict[str, Any]:
    """The request body to send upstream (the provider sets ``model``/``stream``).

    Raises :class:`~gateway.errors.InvalidRequest` for content the upstream's
    dialect cannot express.
    """
    if client == "gemini":  # the body is already Chat Completions
        return body if upstream == "openai" else anthropic_from_openai(body)
    if client == "responses":
        if upstream == "responses":
            return body  # a native Responses upstream: the client's body as is
        chat = chat_from_responses(body)
        return chat if upstream == "openai" else anthropic_from_openai(chat)
    if client == upstream:
        return body
    if client == "openai":
        return anthropic_from_openai(body)
    return openai_from_anthropic(body)


def stream_encoder(
    client: ClientDialect,
    upstream: Dialect,
    *,
    include_usage: bool,
    model: str,
    body: dict[str, Any] | None = None,
    response_id: str | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> StreamEncoder:
    """A fresh encoder for one stream; ``model`` is the name the client asked
    for, ``body`` the client's request (a Responses stream echoes it; every
    encoder estimates input tokens from it when the upstream reports none),
    ``response_id`` the Response's id and ``max_output_bytes`` how much output
    a translated Responses stream may hold (the model's ``max_response_bytes``)."""
    if client == "gemini":
        gemini = GeminiFromOpenAI(model=model, body=body)
        if upstream == "openai":
            return gemini
        return Chained(OpenAIFromAnthropic(model=model, include_usage=True, body=body), gemini)
    if client == "responses":
        if upstream == "responses":
            return ResponsesPassthrough(body)
        responses = ResponsesFromChat(body or {}, response_id, max_output_bytes)
        if upstream == "openai":
            return responses
        return Chained(OpenAIFromAnthropic(model=model, include_usage=True, body=body), responses)
    if client == "openai":
        if upstream == "openai":
            return OpenAIPassthrough(include_usage=include_usage, body=body)
        return OpenAIFromAnthropic(model=model, include_usage=include_usage, body=body)
    if upstream == "anthropic":
        return AnthropicPassthrough(body)
    return AnthropicFromOpenAI(model=model, body=body)


def response_body(
    client: ClientDialect,
    upstream: Dialect,
    payload: dict[str, Any],
    *,
    model: str,
    body: dict[str, Any] | None = None,
    response_id: str | None = None,
) -> dict[str, Any]:
    """A non-streaming upstream response in the client's dialect (``body``:
    the client's request, echoed by a Response object).

    Raises :class:`~gateway.errors.UpstreamProtocolError` for a response that
    cannot be expressed in the client's dialect.
    """
    if client == "gemini":
        if upstream == "anthropic":
            payload = openai_from_anthropic_message(payload, model=model)
        return gemini_from_completion(payload, model)
    if client == "responses":
        if upstream == "responses":
            return payload
        if upstream == "anthropic":
            payload = openai_from_anthropic_message(payload, model=model)
        return response_from_completion(payload, body or {}, response_id)
    if client == upstream:
        return payload
    if client == "openai":
        return openai_from_anthropic_message(payload, model=model)
    return anthropic_from_openai_completion(payload, model=model)
