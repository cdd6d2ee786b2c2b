"""Upstream HTTP status -> GatewayError, shared by the HTTP providers.

Follows the providers' documented status codes: OpenAI
(https://platform.openai.com/docs/guides/error-codes) and Anthropic
(https://docs.anthropic.com/en/api/errors; 529 is ``overloaded_error``).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from math import isfinite
from time import time
from types import MappingProxyType

from ..errors import (
    GatewayError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)

MAX_RETRY_AFTER_S = 86400.0
"""An upstream's ``Retry-After`` is capped at a day (it is relayed to clients)."""


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delay-seconds or HTTP-date, RFC 9110 10.2.3),
    in [0, :data:`MAX_RETRY_AFTER_S`]; None when absent or unreadable
    (``inf`` and ``nan`` included: the header comes from the upstream)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def error_for_status(
    status: int,
    message: str | None = None,
    retry_after: str | None = None,
    *,
    kind: str | None = None,
    detail: str | None = None,
) -> GatewayError:
    """The GatewayError for an upstream's non-2xx ``status``.

    ``message`` and ``kind`` come from the provider's own error object (its
    ``error.message`` and ``error.type``, written for API clients) and are
    relayed, shortened; the raw body and anything about the connection stay
    in ``detail``, for the log.
    """
    after = retry_after_seconds(retry_after)
    label = f"{kind}, HTTP {status}" if kind else f"HTTP {status}"
    said = f": {message[:MESSAGE_LIMIT]}" if message else ""
    if status == 429:
        return UpstreamRateLimited(
            f"The upstream provider is rate limiting requests ({label}){said}",
            retry_after=after,
            detail=detail,
        )
    if status in (503, 529):
        return UpstreamOverloaded(
            f"The upstream provider is overloaded ({label}){said}", retry_after=after, detail=detail
        )
    if status in (408, 504):
        return UpstreamTimeout(f"The upstream provider timed out ({label}){said}", detail=detail)
    if status in (401, 403):
        # The gateway's own credentials are wrong: the client cannot fix that,
        # and the provider's message may describe the key.
        return UpstreamAuthError(
            f"The upstream provider rejected the gateway's credentials (HTTP {status})",
            detail=detail,
        )
    if 400 <= status < 500:
        return UpstreamRejected(
            f"The upstream provider rejected the request ({label}){said}",
            status=status,
            detail=detail,
        )
    return UpstreamError(f"The upstream provider failed ({label}){said}", detail=detail)


MESSAGE_LIMIT = 300
"""Characters of a provider's error message relayed to the client."""


ANTHROPIC_STATUS_OF_TYPE = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
    }
)
"""Anthropic ``error.type`` -> the HTTP status Anthropic documents for it
(https://docs.anthropic.com/en/api/errors)."""


def error_for_anthropic_type(error: object) -> GatewayError:
    """The GatewayError for an Anthropic error object ``{"type", "message"}``,
    as sent in a mid-stream ``event: error`` (the HTTP status is already 200
    and only ``error.type`` says what happened)."""
    kind, message = "api_error", None
    if isinstance(error, dict):
        kind = str(error.get("type") or kind)
        raw = error.get("message")
        message = raw if isinstance(raw, str) else None
    detail = f"upstream error event {kind}: {message}"
    status = ANTHROPIC_STATUS_OF_TYPE.get(kind)
    if status is None:
        said = f": {message[:MESSAGE_LIMIT]}" if message else ""
        return UpstreamError(f"The upstream provider failed ({kind}){said}", detail=detail)
    return error_for_status(status, message, kind=kind, detail=detail)
