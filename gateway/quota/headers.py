"""Rate-limit response headers in the dialects' own names, from a
:class:`~gateway.quota.limiter.QuotaView`.

- OpenAI (https://platform.openai.com/docs/guides/rate-limits):
  ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, reset as a
  duration (``17s``).
- Anthropic (https://docs.anthropic.com/en/api/rate-limits):
  ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, reset as
  an RFC 3339 time.

Only the limits the key has are sent (requests per minute, tokens per
minute); the windows are fixed UTC minutes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from .limiter import QuotaView
from .store import NO_LIMIT


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_limit_headers(view: QuotaView, anthropic: bool) -> dict[str, str]:
    """The headers for ``view``, in the Anthropic dialect if ``anthropic``."""
    limits, usage, w = view.limits, view.usage, view.windows
    headers: dict[str, str] = {}
    pairs = (
        ("requests", limits.requests_per_minute, usage.requests),
        ("tokens", limits.tokens_per_minute, usage.tokens),
    )
    reset_s = max(0, math.ceil(w.minute_ends - w.now))
    for what, limit, used in pairs:
        if limit == NO_LIMIT:
            continue
        remaining = str(max(0, limit - used))
        if anthropic:
            headers[f"anthropic-ratelimit-{what}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{what}-remaining"] = remaining
            headers[f"anthropic-ratelimit-{what}-reset"] = _rfc3339(w.minute_ends)
        else:
            headers[f"x-ratelimit-limit-{what}"] = str(limit)
            headers[f"x-ratelimit-remaining-{what}"] = remaining
            headers[f"x-ratelimit-reset-{what}"] = f"{reset_s}s"
    return headers
