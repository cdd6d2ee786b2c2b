"""The gateway's error tree. Each class knows its HTTP status, its error type
in both client dialects, and the stream termination reason it records.

::

    GatewayError
    ├── ClientError                      4xx: the request is at fault
    │   ├── InvalidRequest               400 invalid_request_error
    │   ├── AuthenticationFailed         401 invalid_api_key (no, unknown or expired key)
    │   ├── ModelNotAllowed              403 permission_error (outside the key's models)
    │   ├── KeyRateLimited               429 rate_limit_exceeded + Retry-After (per key)
    │   ├── KeyQuotaExhausted            429 insufficient_quota (the key's token budget)
    │   ├── ModelNotFound                404 model_not_found
    │   ├── RouteNotFound                404 / MethodNotAllowed 405
    │   ├── RequestTimeout               408 the body arrived too slowly
    │   ├── PayloadTooLarge              413 request_too_large
    │   └── UnsupportedMediaType         415
    ├── Unavailable                      the gateway turns the request away
    │   ├── AtCapacity                   429 + Retry-After (admission control)
    │   ├── DeploymentsUnavailable       503 + Retry-After (every deployment cooling down)
    │   ├── DeploymentsBusy              429 + Retry-After (every deployment full, queue spent)
    │   ├── StateUnavailable             503 state_unavailable (Redis did not answer)
    │   ├── StateBusy                    503 state_busy (every Redis connection in use)
    │   └── ShuttingDown                 503, or a ``shutdown`` error event
    ├── DeadlineExceeded                 504 deadline_exceeded (the whole stream)
    └── UpstreamError                    502: the provider is at fault
        ├── UpstreamConnectError         502 could not reach the provider
        ├── UpstreamProtocolError        502 the provider sent something unparseable
        ├── UpstreamRedirected           502 the provider answered with a redirect (never followed)
        ├── UpstreamResponseTooLarge     502 a response body past ``max_response_bytes``
        ├── UpstreamAuthError            502 the gateway's upstream credentials are wrong
        ├── UpstreamRejected             the provider's own 4xx, relayed
        ├── UpstreamRateLimited          429, keeps Retry-After
        ├── UpstreamOverloaded           503 (also Anthropic's 529)
        ├── UpstreamTimeout              504 no first token in time
        └── UpstreamStalled              504 the upstream went silent mid-stream

Rendering follows the two public error formats: OpenAI
``{"error": {"message", "type", "param", "code"}}`` and Anthropic
``{"type": "error", "error": {"type", "message"}}``
(https://docs.anthropic.com/en/api/errors). Errors are matched by type, never
by message text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .termination import Termination


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    """OpenAI-dialect ``error.type``."""
    anthropic_type: ClassVar[str] = "api_error"
    """Anthropic-dialect ``error.type``."""
    code: ClassVar[str | None] = None
    reason: ClassVar[Termination] = Termination.UPSTREAM_ERROR
    """Termination reason recorded when this error ends a stream."""
    retryable: ClassVar[bool] = False
    """Whether a retry or fallback may help (only before the first token)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        """What the client is told: short, with no internal address or class name."""
        self.detail = detail
        """What the log is told (the underlying exception, an upstream's body)."""
        self.param = param
        self.retry_after = retry_after
        self.http_status = status or self.status

    def headers(self) -> dict[str, str]:
        """Response headers that belong with the error (``Retry-After``)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(0, round(self.retry_after)))}

    def openai_body(self) -> dict[str, Any]:
        """OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic error object: ``{"type": "error", "error": {"type", "message"}}``."""
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}


class InternalError(GatewayError):
    """A bug: an exception no layer expected. 500 ``internal_error``; the
    exception goes to ``detail`` (the log), never to the client."""

    code = "internal_error"


class ClientError(GatewayError):
    """The request is at fault (4xx)."""

    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    reason = Termination.REJECTED


class InvalidRequest(ClientError):
    """Malformed JSON, a body that is not an object, a missing or ill-typed field."""


class AuthenticationFailed(ClientError):
    """No key, an unknown key or an expired one (OpenAI's 401 ``invalid_api_key``)."""

    status, code, anthropic_type = 401, "invalid_api_key", "authentication_error"


class ModelNotAllowed(ClientError):
    """The model exists but is not in the key's ``models``."""

    status, type, anthropic_type, code = (
        403,
        "permission_error",
        "permission_error",
        "model_not_allowed",
    )


class KeyRateLimited(ClientError):
    """Over the key's requests or tokens per minute or its concurrent requests;
    ``Retry-After`` says when it would be admitted."""

    status, type, anthropic_type = 429, "rate_limit_error", "rate_limit_error"
    code = "rate_limit_exceeded"


class KeyQuotaExhausted(ClientError):
    """The key spent its token or USD budget for the period; ``Retry-After``
    points at the next."""

    status, type, anthropic_type = 429, "insufficient_quota", "rate_limit_error"
    code = "insufficient_quota"


class ModelNotFound(ClientError):
    status, code, anthropic_type = 404, "model_not_found", "not_found_error"


class StoredNotFound(ClientError):
    """No stored response or resumable stream with that id (never stored,
    expired, deleted, or another key's)."""

    status, code, anthropic_type = 404, "not_found", "not_found_error"


class RouteNotFound(ClientError):
    status, code, anthropic_type = 404, "not_found", "not_found_error"


class MethodNotAllowed(ClientError):
    status, code = 405, "method_not_allowed"


class RequestTimeout(ClientError):
    status, code = 408, "request_timeout"


class PayloadTooLarge(ClientError):
    status, code, anthropic_type = 413, "request_too_large", "request_too_large"


class UnsupportedMediaType(ClientError):
    status, code = 415, "unsupported_media_type"


class Unavailable(GatewayError):
    """The gateway itself turns the request away."""

    status, type, anthropic_type, code = 503, "unavailable", "overloaded_error", "unavailable"
    reason = Termination.REJECTED


class AtCapacity(Unavailable):
    status, type, anthropic_type, code = 429, "rate_limit_error", "rate_limit_error", "at_capacity"


class StateUnavailable(Unavailable):
    """The quota store (Redis) did not answer and ``[state] fail_open`` is off."""

    code, anthropic_type = "state_unavailable", "api_error"


class StoreUnavailable(Unavailable):
    """A state or stream store (Redis) did not answer: 503 ``store_unavailable``.
    The one class for it: the quota path maps it to :class:`StateUnavailable`
    (or serves uncounted, ``fail_open``); the stream store raises it as is."""

    code, anthropic_type = "store_unavailable", "api_error"


class StateBusy(Unavailable):
    """Every connection of this process's Redis pool stayed in use for
    ``[state] pool_timeout_s``: the gateway is busy, Redis is not (known) down.
    503 ``state_busy`` with ``Retry-After``."""

    code, anthropic_type = "state_busy", "overloaded_error"


class ShuttingDown(Unavailable):
    code, reason = "shutting_down", Termination.SHUTDOWN


# Request bodies (issue 26: gateway/body_budget.py)
class BodyBudgetExhausted(Unavailable):
    """The request bodies in flight filled ``[server] max_body_bytes_in_flight``
    for ``body_budget_wait_s``: 503 ``body_budget_exhausted`` with ``Retry-After``."""

    code, anthropic_type = "body_budget_exhausted", "overloaded_error"


class DeadlineExceeded(GatewayError):
    status, type, anthropic_type = 504, "deadline_exceeded", "timeout_error"
    code, reason = "deadline_exceeded", Termination.DEADLINE


class UpstreamError(GatewayError):
    """The provider failed; 502 unless a subclass says otherwise."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"
    code = "upstream_error"
    reason = Termination.UPSTREAM_ERROR
    retryable = True


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"


class UpstreamProtocolError(UpstreamError):
    """The provider's response could not be parsed (bad JSON, not SSE, cut mid-event)."""

    code = "upstream_protocol_error"
    retryable = False


class UpstreamRedirected(UpstreamError):
    """The provider answered with a redirect (3xx). Never followed: a request,
    its prompt and the upstream key go only to the configured ``base_url``;
    the ``Location`` goes to :attr:`detail`, for the log."""

    code = "upstream_redirect"
    retryable = False


class UpstreamResponseTooLarge(UpstreamError):
    """A non-streaming response body larger than the model's ``max_response_bytes``."""

    code = "upstream_response_too_large"
    retryable = False


class UpstreamAuthError(UpstreamError):
    """The provider rejected the gateway's own credentials (401/403)."""

    code = "upstream_auth_error"
    retryable = False


class UpstreamRejected(UpstreamError):
    """The provider refused the request with a 4xx; relayed with its status."""

    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "upstream_rejected"
    retryable = False


class UpstreamRateLimited(UpstreamError):
    status, type, anthropic_type, code = 429, "rate_limit_error", "rate_limit_error", "rate_limited"


class UpstreamOverloaded(UpstreamError):
    status, type, anthropic_type, code = 503, "overloaded_error", "overloaded_error", "overloaded"


class UpstreamTimeout(UpstreamError):
    """No first chunk within ``ttft_timeout_s`` (or the SDK's own timeout)."""

    status, type, anthropic_type = 504, "upstream_timeout", "timeout_error"
    code, reason = "upstream_timeout", Termination.UPSTREAM_TIMEOUT


class UpstreamStalled(UpstreamError):
    """The upstream went silent for ``idle_timeout_s`` mid-stream."""

    status, type, anthropic_type = 504, "upstream_stalled", "timeout_error"
    code, reason, retryable = "upstream_stalled", Termination.UPSTREAM_STALLED, False


class UpstreamNotConfigured(Unavailable):
    """The model's upstream API key is not set (its ``api_key_env`` variable is
    unset or empty): 503 ``upstream_not_configured``; ``detail`` names the variable."""

    code, anthropic_type = "upstream_not_configured", "api_error"
    reason = Termination.REJECTED


class StreamCancelled(GatewayError):
    """A detached generation (a background response) was cancelled by its owner."""

    status, type, anthropic_type, code = 409, "cancelled", "api_error", "cancelled"
    reason = Termination.CANCELLED


class StreamGone(StreamCancelled):
    """The stored stream a generation writes to was deleted (or expired) under
    it: the generation stops as if cancelled."""


class ProducerLost(GatewayError):
    """The process generating a stored stream stopped without ending it (it was
    killed, or lost Redis for longer than its producer lease): followers on
    other replicas end with this error instead of waiting for events that will
    never come. 502 ``producer_lost``."""

    status, type, anthropic_type, code = 502, "api_error", "api_error", "producer_lost"


# -- routing across deployments (gateway/routing) ----------------------------------


class DeploymentsUnavailable(Unavailable):
    """Every deployment of the model is cooling down (or was tried by this
    request already): 503 ``deployments_unavailable``, ``Retry-After`` the
    time until the first cooldown ends. Retryable: the model's fallbacks
    are tried next."""

    code, anthropic_type = "deployments_unavailable", "overloaded_error"
    retryable = True


class DeploymentsBusy(Unavailable):
    """Every deployment of the model stayed at its ``max_concurrent_streams``
    for the queue's time, or the queue was full: 429 ``deployments_busy``
    with ``Retry-After``. Retryable: the model's fallbacks are tried next."""

    status, type, anthropic_type = 429, "rate_limit_error", "rate_limit_error"
    code = "deployments_busy"
    retryable = True
