"""Request fields a translation dropped, collected per request.

A translation between dialects (:mod:`gateway.dialects.responses`,
:mod:`gateway.dialects.translate_request`) drops a field it cannot send on
when the field only tunes how the answer is produced (a sampling knob, a
cache hint); it calls :func:`drop` with the field's name as the client sent
it (``seed``, ``reasoning.summary``). The middleware opens one collection per
request (:func:`collect`) and reports it: the ``Sluice-Dropped-Params``
response header (``a, b``; also on streamed responses: the header is added
when the response is prepared) and ``dropped_params`` on the request's
summary log line.

The collection lives in a context variable: a translation is a pure function
of a body, called from the request's task (aiohttp runs each request in its
own task, so collections never mix). Outside a request nothing is collected.
Every target a request may be served by is translated before the first
attempt, so a field dropped only for a fallback's dialect is reported too.
"""

from __future__ import annotations

from contextvars import ContextVar

HEADER = "Sluice-Dropped-Params"

_CURRENT: ContextVar[list[str] | None] = ContextVar("sluice_dropped_params", default=None)


def collect() -> list[str]:
    """Start collecting for the current request: the (live) list of names
    :func:`drop` adds to, in first-dropped order, without repeats."""
    names: list[str] = []
    _CURRENT.set(names)
    return names


def drop(*names: str) -> None:
    """Record that the fields ``names`` were not sent upstream."""
    current = _CURRENT.get()
    if current is None:
        return
    for name in names:
        if name not in current:
            current.append(name)


def header_value(names: list[str]) -> str:
    """``a, b``: the header's value for ``names``."""
    return ", ".join(names)
