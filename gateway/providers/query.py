"""An upstream URL with a model's query parameters (``query``, ``api-version``)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to its query (a name already there is
    replaced), percent-encoded (RFC 3986); ``url`` unchanged when ``params``
    is empty. Query values may be secrets: callers never log the result
    (:func:`gateway.providers.http.error_for_response` logs URLs without it)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
