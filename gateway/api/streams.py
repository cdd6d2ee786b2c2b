"""Resumable Chat Completions streams (opt-in): a dropped connection resumes
where it left off, with no event lost or repeated.

A stream is resumable when the request sends ``Sluice-Resumable: true`` or
its model has ``resumable = true``. Its generation then runs detached from
the request (:func:`gateway.api.chat.detach`), into the stream store, and the
request follows the store live: the response carries ``Sluice-Stream-Id``,
and every SSE event an ``id: n`` (n from 1). If the client disconnects, the
generation goes on, bounded by its deadline and ``[store] stream_max_bytes``
(past it the stream ends with an error event saying so).

- ``GET /v1/streams/{id}`` with ``Last-Event-ID: n`` (or ``?last_event_id=n``)
  replays every event after n, then follows live to the end, a drain per
  event. A finished stream stays resumable for ``[store] resume_ttl_s``.
- ``DELETE /v1/streams/{id}`` cancels it (the upstream closes at once) and
  removes it.
- Only the key that started a stream may resume or cancel it (404 otherwise).

Cancelling the upstream when the client leaves stays the default: it saves
money. A resumable stream is answered 200 from the start: an upstream
failure before the first chunk is an error event, not an HTTP error.
"""

from __future__ import annotations

import dataclasses
import uuid

import orjson
from aiohttp import web

from ..downstream import StoreWriter
from ..errors import AtCapacity, ShuttingDown
from ..state import DETACHED, SETTINGS, STREAM_STORE
from .chat import ChatCall, detach
from .follow import chat_error_event, event_number, owned_or_404, owner_of, read_stored

STREAMS_ROUTE = "/v1/streams"
RESUMABLE_HEADER = "Sluice-Resumable"
STREAM_ID_PREFIX = "strm_"


def wants_resume(request: web.Request, model: str) -> bool:
    """Whether a streaming request is resumable (header or model setting)."""
    if request.headers.get(RESUMABLE_HEADER, "").strip().lower() == "true":
        return True
    configured = request.app[SETTINGS].model(model)
    return configured is not None and configured.resumable


async def serve_resumable(request: web.Request, call: ChatCall) -> web.StreamResponse:
    """Start ``call`` detached into the store and follow it (see the module docstring)."""
    settings = request.app[SETTINGS]
    store = request.app[STREAM_STORE]
    stream_id = f"{STREAM_ID_PREFIX}{uuid.uuid4().hex}"
    await store.create(stream_id, owner_of(request))
    writer = StoreWriter(store, stream_id, ttl_s=settings.store.resume_ttl_s)
    try:
        await detach(request, dataclasses.replace(call, response_id=stream_id), writer)
    except BaseException:
        await store.delete(stream_id)
        raise
    try:
        return await read_stored(request, stream_id, -1, with_ids=True, end_with=chat_error_event)
    except (AtCapacity, ShuttingDown):
        # Its reader was refused: nobody asked for a generation nobody reads.
        request.app[DETACHED].cancel(stream_id)
        raise


async def resume_stream(request: web.Request) -> web.StreamResponse:
    """The events after ``Last-Event-ID`` (or ``?last_event_id``), then live ones."""
    if header := request.headers.get("Last-Event-ID"):
        last = event_number(header, "Last-Event-ID", lowest=0)
    else:
        last = event_number(request.query.get("last_event_id", "0"), "last_event_id", lowest=0)
    stored = await owned_or_404(request, "stream_id", "stream", STREAM_ID_PREFIX)
    return await read_stored(
        request,
        stored.stream_id,
        last - 1,
        with_ids=True,
        end_with=chat_error_event,
        resumed=stored,
    )


async def delete_stream(request: web.Request) -> web.Response:
    """Cancel the stream (its upstream closes at once) and remove it."""
    stored = await owned_or_404(request, "stream_id", "stream", STREAM_ID_PREFIX)
    store = request.app[STREAM_STORE]
    if not request.app[DETACHED].cancel(stored.stream_id) and stored.status.running:
        await store.request_cancel(stored.stream_id)  # it runs on another replica
    await store.delete(stored.stream_id)
    body = {"id": stored.stream_id, "object": "stream.deleted", "deleted": True}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(STREAMS_ROUTE + "/{stream_id}", resume_stream)
    app.router.add_delete(STREAMS_ROUTE + "/{stream_id}", delete_stream)
