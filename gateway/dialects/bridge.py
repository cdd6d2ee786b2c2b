"""Between a client's dialect and an upstream's: request bodies, stream
encoders and non-streaming responses. Same-dialect paths are passthrough.

Every function takes ``client`` (the dialect the client speaks) and
``upstream`` (the dialect of the provider that serves the request).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from ..providers.base import Dialect
from .frames import StreamEncoder
from .openai import OpenAIPassthrough


def _unsupported(client: Dialect, upstream: Dialect) -> InvalidRequest:
    return InvalidRequest(f"no translation from the {client} dialect to a {upstream} upstream")


def upstream_body(client: Dialect, upstream: Dialect, body: dict[str, Any]) -> dict[str, Any]:
    """The request body to send upstream (the provider sets ``model``/``stream``)."""
    if client == upstream:
        return body
    raise _unsupported(client, upstream)


def stream_encoder(
    client: Dialect, upstream: Dialect, *, include_usage: bool, model: str
) -> StreamEncoder:
    """A fresh encoder for one stream; ``model`` is the name the client asked for."""
    if client == upstream == "openai":
        return OpenAIPassthrough(include_usage=include_usage)
    raise _unsupported(client, upstream)


def response_body(
    client: Dialect, upstream: Dialect, payload: dict[str, Any], *, model: str
) -> dict[str, Any]:
    """A non-streaming upstream response in the client's dialect."""
    if client == upstream:
        return payload
    raise _unsupported(client, upstream)
