"""The gateway's error tree. Each class knows its HTTP status, its error type
in both client dialects, and the stream termination reason it records.

::

    GatewayError
    ├── ClientError                      4xx: the request is at fault
    │   ├── InvalidRequest               400 invalid_request_error
    │   ├── ModelNotFound                404 model_not_found
    │   ├── RouteNotFound                404 / MethodNotAllowed 405
    │   ├── PayloadTooLarge              413 request_too_large
    │   └── UnsupportedMediaType         415
    └── UpstreamError                    502: the provider is at fault
        ├── UpstreamConnectError         502 could not reach the provider
        ├── UpstreamProtocolError        502 the provider sent something unparseable
        ├── UpstreamRejected             the provider's own 4xx, relayed
        ├── UpstreamRateLimited          429, keeps Retry-After
        ├── UpstreamOverloaded           503 (also Anthropic's 529)
        └── UpstreamTimeout              504

Rendering follows the two public error formats: OpenAI
``{"error": {"message", "type", "param", "code"}}`` and Anthropic
``{"type": "error", "error": {"type", "message"}}``
(https://docs.anthropic.com/en/api/errors). Errors are matched by type, never
by message text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    """OpenAI-dialect ``error.type``."""
    anthropic_type: ClassVar[str] = "api_error"
    """Anthropic-dialect ``error.type``."""
    code: ClassVar[str | None] = None
    reason: ClassVar[str] = "upstream_error"
    """Termination reason recorded when this error ends a stream."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
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


class ClientError(GatewayError):
    """The request is at fault (4xx)."""

    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    reason = "client_error"


class InvalidRequest(ClientError):
    """Malformed JSON, a body that is not an object, a missing or ill-typed field."""


class ModelNotFound(ClientError):
    status, code, anthropic_type = 404, "model_not_found", "not_found_error"


class RouteNotFound(ClientError):
    status, code, anthropic_type = 404, "not_found", "not_found_error"


class MethodNotAllowed(ClientError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(ClientError):
    status, code, anthropic_type = 413, "request_too_large", "request_too_large"


class UnsupportedMediaType(ClientError):
    status, code = 415, "unsupported_media_type"


class UpstreamError(GatewayError):
    """The provider failed; 502 unless a subclass says otherwise."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"
    code = "upstream_error"
    reason = "upstream_error"


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"


class UpstreamProtocolError(UpstreamError):
    """The provider's response could not be parsed (bad JSON, not SSE, cut mid-event)."""

    code = "upstream_protocol_error"


class UpstreamRejected(UpstreamError):
    """The provider refused the request with a 4xx; relayed with its status."""

    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "upstream_rejected"


class UpstreamRateLimited(UpstreamError):
    status, type, anthropic_type, code = 429, "rate_limit_error", "rate_limit_error", "rate_limited"


class UpstreamOverloaded(UpstreamError):
    status, type, anthropic_type, code = 503, "overloaded_error", "overloaded_error", "overloaded"


class UpstreamTimeout(UpstreamError):
    status, type, anthropic_type, code = (
        504,
        "upstream_timeout",
        "timeout_error",
        "upstream_timeout",
    )
