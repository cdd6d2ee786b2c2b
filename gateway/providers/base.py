"""The Provider protocol and the values that cross it.

A provider speaks one *dialect* (the wire format of its chunks: ``openai`` for
Chat Completions ``chat.completion.chunk`` objects, ``anthropic`` for Messages
stream events). It receives a request body already in that dialect and yields
:class:`UpstreamChunk` values, each the JSON ``data`` of one upstream SSE event,
parsed once. Errors are :class:`gateway.errors.GatewayError` subclasses, mapped
from aiohttp exceptions and HTTP statuses by type (:mod:`gateway.providers.http`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Protocol

Dialect = Literal["openai", "anthropic", "responses"]
"""``responses``: OpenAI Responses API streaming events, from an upstream that
speaks it natively."""

tuple_new = tuple.__new__
"""Builds a NamedTuple on the hot path, ``tuple_new(Cls, (every, field))``:
a NamedTuple's own ``__new__`` is a Python function (defaults filled in)
and costs about twice as much (0.29 against 0.16 µs, CPython 3.11)."""


class UpstreamChunk(NamedTuple):
    """One upstream SSE event.

    ``data`` is the event's data field exactly as received (UTF-8 JSON text,
    relayed unchanged on same-dialect paths); ``payload`` is it parsed;
    ``event`` the SSE event name (Anthropic streams name every event).
    A NamedTuple: one is built per chunk, and a tuple is the cheapest
    immutable value to build.
    """

    data: bytes
    payload: dict[str, Any]
    event: str | None = None


class UpstreamStream(Protocol):
    """An open upstream response. Call :meth:`next` until it returns None;
    always :meth:`close`.

    :meth:`next` ends (None) after the upstream's terminal marker (``[DONE]``
    or ``message_stop``; then :meth:`release`) and raises ``GatewayError`` on failure, including a
    stream cut before its terminal marker. It must be cancel-safe: a call
    cancelled while it waits loses no chunk, so the stream core can interrupt
    a wait to send a heartbeat and then wait again.

    Optional: ``next_nowait() -> UpstreamChunk | None``, a chunk that already
    arrived (else None, never waiting or raising), lets the stream core write
    several at once (:meth:`gateway.stream.Stream._batch`).
    """

    async def next(self) -> UpstreamChunk | None:
        """The next chunk, or None at the end of the stream."""
        ...

    def close(self) -> None:
        """Close the upstream connection now (synchronous, idempotent, never raises)."""
        ...

    def release(self) -> None:
        """After the terminal marker: let the connection be reused (keep-alive)."""
        ...


class Provider(Protocol):
    """One configured upstream model."""

    kind: str
    """``openai``, ``anthropic`` or ``sim``: the ``provider`` metric label."""
    dialect: Dialect

    async def open_stream(self, body: dict[str, Any]) -> UpstreamStream:
        """Send a streaming request; returns once the upstream accepted it.

        ``body`` is in the provider's dialect; the provider sets ``model`` and
        ``stream``. Raises ``GatewayError`` if the upstream refuses or fails.

        Optional: a provider with a class attribute ``takes_split_body = True``
        may be given a :class:`gateway.split_body.SplitBody` (a large body in
        its own dialect: a dict of the small fields plus the client's raw
        bytes of the rest; send ``body.encode(edited_small_fields)``).
        Providers without it always get a whole ``dict``.
        """
        ...

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send a non-streaming request; returns the upstream's JSON object."""
        ...

    async def aclose(self) -> None:
        """Release the provider's HTTP client."""
        ...
