"""Build one Provider per configured model."""

from __future__ import annotations

from ..config import (
    AnthropicModel,
    AzureModel,
    BedrockModel,
    GeminiModel,
    ModelSettings,
    OpenAIModel,
    SimModel,
)
from .anthropic import AnthropicProvider
from .azure import AzureProvider, AzureResponsesProvider
from .base import Provider
from .gemini import GeminiProvider
from .http import UpstreamSessions
from .openai import OpenAIProvider, OpenAIResponsesProvider
from .sim import SimProvider


def build_provider(
    model: ModelSettings, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
) -> Provider:
    """The provider serving ``model`` (HTTP ones share ``sessions``).
    Raises ``ValueError`` for an unknown kind."""
    if isinstance(model, SimModel):
        return SimProvider(model)
    if isinstance(model, AzureModel):
        return AzureProvider(model, sessions, connect_timeout_s)
    if isinstance(model, OpenAIModel):
        return OpenAIProvider(model, sessions, connect_timeout_s)
    if isinstance(model, AnthropicModel):
        return AnthropicProvider(model, sessions, connect_timeout_s)
    if isinstance(model, BedrockModel):
        # Imported here: botocore costs ~0.3-0.4 s and ~8 MiB at start-up, paid
        # only by a gateway that has a Bedrock model.
        from .bedrock import BedrockProvider

        return BedrockProvider(model, sessions, connect_timeout_s)
    if isinstance(model, GeminiModel):
        return GeminiProvider(model, sessions, connect_timeout_s)
    raise ValueError(f"provider {model.provider!r} is not available in this build")


def build_responses_provider(
    model: ModelSettings, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
) -> Provider | None:
    """The native ``/responses`` provider of a model with ``responses_api =
    "native"`` (OpenAI-compatible or Azure), else None."""
    if not isinstance(model, OpenAIModel) or model.responses_api != "native":
        return None
    if isinstance(model, AzureModel):
        return AzureResponsesProvider(model, sessions, connect_timeout_s)
    return OpenAIResponsesProvider(model, sessions, connect_timeout_s)
