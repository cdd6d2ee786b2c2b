"""Input tokens read from the provider's prompt cache, from a response's
``usage`` (they are billed at the cached-input rate).

- OpenAI Chat Completions: ``usage.prompt_tokens_details.cached_tokens``
  (part of ``prompt_tokens``; https://platform.openai.com/docs/api-reference/chat/object);
- Anthropic Messages: ``usage.cache_read_input_tokens`` (Sluice counts it in
  the input tokens; https://docs.anthropic.com/en/api/messages).
"""

from __future__ import annotations

from typing import Any


def cached_input_tokens(payload: dict[str, Any], dialect: str) -> int:
    """Cached input tokens reported in ``payload`` (a completion, a Message or
    a chunk) of the upstream ``dialect`` (``openai``, ``anthropic``); 0 when
    none are reported."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return 0
    if dialect == "anthropic":
        cached = usage.get("cache_read_input_tokens")
    else:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) and not isinstance(cached, bool) and cached > 0 else 0
