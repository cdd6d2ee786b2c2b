"""GenAI semantic-convention names and values, resolved once per configured model.

Follows the OpenTelemetry GenAI semantic conventions as of
open-telemetry/semantic-conventions commit 7b0c0fe1 (2026-04-27,
``docs/gen-ai/gen-ai-metrics.md`` and ``gen-ai-spans.md``; the last version
in that repository before the conventions moved to
open-telemetry/semantic-conventions-genai, status "Development"):
https://github.com/open-telemetry/semantic-conventions/blob/7b0c0fe1e6d7b7fc857ba496aad7919e368453e7/docs/gen-ai/gen-ai-metrics.md
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from ..config import ModelSettings
from ..errors import GatewayError
from ..termination import Termination

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
REQUEST_STREAM = "gen_ai.request.stream"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_MESSAGES = "gen_ai.input.messages"
TERMINATION = "sluice.termination"
"""Sluice's own: how the stream ended (:class:`~gateway.termination.Termination`)."""
USAGE_ESTIMATED = "sluice.usage_estimated"
ATTEMPT = "sluice.attempt"
"""Sluice's own: the attempt's number within the request (1, 2, ...)."""

CHAT = "chat"
"""``gen_ai.operation.name`` of every Sluice route: Chat Completions, Messages
and Responses are all chat (the spec's ``chat`` value)."""

PROVIDER_NAMES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
}
"""Sluice's ``provider`` kinds -> the spec's well-known ``gen_ai.provider.name``
values; a kind not listed (``sim``) is its own custom value."""

DEFAULT_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
"""The upstream a model without ``base_url`` talks to (for ``server.address``)."""


def provider_name(kind: str) -> str:
    """The spec's ``gen_ai.provider.name`` for a Sluice provider kind."""
    return PROVIDER_NAMES.get(kind, kind)


class Upstream(NamedTuple):
    """One configured model's upstream leg, as GenAI attributes."""

    provider: str
    """``gen_ai.provider.name``."""
    model: str
    """``gen_ai.request.model`` toward the upstream (``upstream_model`` or the name)."""
    address: str | None
    port: int | None

    def attributes(self) -> dict[str, str | int]:
        """The client-leg attributes (operation, provider, models, address, port)."""
        attrs: dict[str, str | int] = {
            OPERATION: CHAT,
            PROVIDER: self.provider,
            REQUEST_MODEL: self.model,
            RESPONSE_MODEL: self.model,
        }
        if self.address is not None:
            attrs[SERVER_ADDRESS] = self.address
            if self.port is not None:
                attrs[SERVER_PORT] = self.port
        return attrs


def upstream_of(model: ModelSettings) -> Upstream:
    """``model``'s upstream: provider name, model id, address and port (the
    default port of the URL's scheme when it names none)."""
    kind = model.provider
    url = getattr(model, "base_url", None) or DEFAULT_URLS.get(kind)
    address: str | None = None
    port: int | None = None
    if url:
        parts = urlsplit(url)
        address = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    return Upstream(provider_name(kind), model.target_model, address, port)


def error_type(error: GatewayError | None, reason: Termination) -> str | None:
    """``error.type`` of a request or attempt: the error's code (low
    cardinality: ``upstream_timeout``, ``rate_limited``, ...; the class name
    when it has none), or for a stream cut short without one the termination
    reason (``client_disconnected``, ``slow_client``); None when completed."""
    if error is not None:
        return error.code or type(error).__name__
    if reason is Termination.COMPLETED:
        return None
    return reason.value
