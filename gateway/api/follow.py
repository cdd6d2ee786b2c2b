"""Reading a stored stream back: replay, then follow live, a drain per event.

Shared by ``GET /v1/responses/{id}?stream=true`` (Responses events carry
their own ``sequence_number``) and ``GET /v1/streams/{id}`` (resumable Chat
Completions streams, whose events get an SSE ``id: n``, n from 1, so a
browser's ``Last-Event-ID`` resumes them; WHATWG HTML, "Server-sent events").
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import structlog
from aiohttp import web

from ..errors import GatewayError, StoredNotFound
from ..middleware import route_of
from ..sse import SSEResponse
from ..state import KEY, METRICS, SETTINGS, STREAM_STORE
from ..store.base import StoredStream

log = structlog.get_logger("gateway.follow")

STREAM_ID_HEADER = "Sluice-Stream-Id"

ErrorEvent = Callable[[GatewayError, int, "bytes | None"], bytes]
"""``(error, number, snapshot) -> SSE event``: the event that ends a followed
stream its store could not finish (``number``: the event's 0-based number;
``snapshot``: the stream's stored snapshot, if any)."""


def chat_error_event(err: GatewayError, number: int, snapshot: bytes | None) -> bytes:
    """A Chat Completions stream's error event (the OpenAI error object)."""
    return b"data: " + orjson.dumps(err.openai_body()) + b"\n\n"


def owner_of(request: web.Request) -> str | None:
    """The caller's key name (None without keys): a stored stream belongs to
    the key that created it; any other gets 404."""
    key = request.get(KEY)
    return key.name if key is not None else None


async def owned_or_404(request: web.Request, param: str, noun: str) -> StoredStream:
    """The stored stream named by the route's ``param`` if the caller owns it.
    Raises :class:`~gateway.errors.StoredNotFound` (404, naming ``noun`` and
    the id) otherwise."""
    stream_id = request.match_info[param]
    stored = await owned(request, stream_id)
    if stored is None:
        raise StoredNotFound(f"No {noun} with id '{stream_id}'", param=param)
    return stored


async def owned(request: web.Request, stream_id: str) -> StoredStream | None:
    """The stored stream if it exists and belongs to the caller's key, else None
    (the caller answers 404 either way: another key's streams are not revealed)."""
    stored = await request.app[STREAM_STORE].get(stream_id)
    if stored is None or stored.owner != owner_of(request):
        return None
    return stored


async def follow(
    request: web.Request,
    stream_id: str,
    after: int,
    *,
    end_with: ErrorEvent,
    with_ids: bool = False,
    resumed: StoredStream | None = None,
) -> web.StreamResponse:
    """An SSE response with the stored events numbered above ``after`` (0-based),
    then the live ones until the stream ends. ``with_ids``: each event gets
    ``id: <number + 1>``.

    ``resumed``: the stream as read when a client came back for it (a resume,
    not the first reader): counted in ``sluice_stream_resumes_total`` and its
    events already stored in ``sluice_stream_replayed_events_total``.

    A store that cannot go on after the response started (Redis unreachable,
    the producer lost: :class:`~gateway.errors.ProducerLost`) ends it with
    ``end_with``'s event: the reader gets a typed error, never a hang."""
    stream = request.app[SETTINGS].stream
    store = request.app[STREAM_STORE]
    route = route_of(request)
    metrics = request.app[METRICS]
    if resumed is not None:
        metrics.stream_resumes.labels(route).inc()
    sse = SSEResponse(
        request,
        buffer_bytes=stream.downstream_buffer_bytes,
        send_timeout_s=stream.send_timeout_s,
    )
    if with_ids:
        sse.response.headers[STREAM_ID_HEADER] = stream_id
    await sse.prepare()
    number = after + 1  # the SSE id (1-based) of the last event sent, so far the reader's own
    try:
        try:
            async for event in store.follow(stream_id, after):
                number += 1
                await sse.send(b"id: %d\n%b" % (number, event) if with_ids else event)
        except GatewayError as err:
            log.warning("follow_failed", stream_id=stream_id, error_code=err.code,
                        error=err.message, detail=err.detail)  # fmt: skip
            stored = await _quietly_get(request, stream_id)
            # Not a stored event, so no id: a reader that comes back resumes
            # from its last real event and is told the same.
            await sse.send(end_with(err, number, stored.snapshot if stored else None))
    except ConnectionError:
        sse.abort()
    finally:
        if resumed is not None:
            replayed = min(number - (after + 1), resumed.events - (after + 1))
            if replayed > 0:
                metrics.replayed_events.labels(route).inc(replayed)
    await sse.finish()
    return sse.response


async def _quietly_get(request: web.Request, stream_id: str) -> StoredStream | None:
    try:
        return await request.app[STREAM_STORE].get(stream_id)
    except GatewayError:
        return None
