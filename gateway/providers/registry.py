"""Build one Provider per configured model."""

from __future__ import annotations

from ..config import AnthropicModel, GeminiModel, ModelSettings, OpenAIModel, SimModel
from .anthropic import AnthropicProvider
from .base import Provider
from .gemini import GeminiProvider
from .http import UpstreamSessions
from .openai import OpenAIProvider
from .sim import SimProvider


def build_provider(
    model: ModelSettings, sessions: UpstreamSessions, connect_timeout_s: float = 10.0
) -> Provider:
    """The provider serving ``model`` (HTTP ones share ``sessions``).
    Raises ``ValueError`` for an unknown kind."""
    if isinstance(model, SimModel):
        return SimProvider(model)
    if isinstance(model, OpenAIModel):
        return OpenAIProvider(model, sessions, connect_timeout_s)
    if isinstance(model, AnthropicModel):
        return AnthropicProvider(model, sessions, connect_timeout_s)
    if isinstance(model, GeminiModel):
        return GeminiProvider(model, sessions, connect_timeout_s)
    raise ValueError(f"provider {model.provider!r} is not available in this build")
