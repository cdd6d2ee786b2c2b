"""Upstream HTTP status -> GatewayError, shared by the SDK-backed providers.

Follows the providers' documented status codes: OpenAI
(https://platform.openai.com/docs/guides/error-codes) and Anthropic
(https://docs.anthropic.com/en/api/errors; 529 is ``overloaded_error``).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from time import time

from ..errors import (
    GatewayError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delay-seconds or HTTP-date, RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def error_for_status(status: int, message: str, retry_after: str | None = None) -> GatewayError:
    """The GatewayError for an upstream's non-2xx ``status``."""
    text = f"upstream returned {status}: {message}"
    if status == 429:
        return UpstreamRateLimited(text, retry_after=retry_after_seconds(retry_after))
    if status in (503, 529):
        return UpstreamOverloaded(text, retry_after=retry_after_seconds(retry_after))
    if status in (408, 504):
        return UpstreamTimeout(text)
    if status in (401, 403):
        # The gateway's own credentials are wrong: the client cannot fix that.
        return UpstreamAuthError(f"upstream rejected the gateway's credentials ({status})")
    if 400 <= status < 500:
        return UpstreamRejected(text, status=status)
    return UpstreamError(text)
