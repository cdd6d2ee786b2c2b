"""OpenAI Responses routes.

API reference: https://platform.openai.com/docs/api-reference/responses.

- ``POST /v1/responses``: served on every provider through the Chat
  Completions path (:mod:`gateway.dialects.responses`,
  :mod:`gateway.dialects.translate_responses`), with the same backpressure,
  timeouts, metrics and admission as ``/v1/chat/completions``. Stored by
  default (``store``): the events go to the stream store too.
  ``background: true`` answers at once (status ``queued``) and the generation
  runs on, detached from the request, into the store (with ``stream: true``
  the answer follows it live).
- ``GET /v1/responses/{id}``: the Response object as it stands;
  ``?stream=true&starting_after=N`` replays the stored events after sequence
  number N, then follows live to the end, with a drain per event: how a
  client whose connection dropped resumes, nothing lost or repeated.
- ``POST /v1/responses/{id}/cancel``: stops a background response (its
  upstream closes at once); ``DELETE /v1/responses/{id}`` removes one.

A non-background stream whose client disconnects still cancels its upstream
at once: only background responses outlive their client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiohttp import web

from ..dialects.responses import (
    input_items,
    new_response_id,
    output_as_input,
    parse_responses_request,
    response_object,
)
from ..dialects.translate_responses import failed_event
from ..downstream import StoreWriter
from ..errors import GatewayError, InvalidRequest, StoredNotFound
from ..split_body import whole
from ..state import DETACHED, NATIVE_RESPONSES, SETTINGS, STREAM_STORE, SUMMARY
from ..store.base import StoredStatus, StoredStream, StreamStore
from ..stored_upstream import READ_WAIT_S
from .body import request_body
from .chat import ChatCall, detach, serve
from .follow import event_number, owned, owned_or_404, owner_of, read_stored

RESPONSES_ROUTE = "/v1/responses"
RESPONSE_ID_PREFIX = "resp_"
CANCEL_WAIT_S = 5.0
"""How long a cancel waits for the generation to record its end."""


async def create_response(request: web.Request) -> web.StreamResponse:
    """Create a model response: streamed (SSE), one Response object, or in the background."""
    async with request_body(request, request.app[SETTINGS].server) as body:
        return await _create_response(request, whole(body))


async def _create_response(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    if _native(request, body.get("model")):
        # Relayed as is: storage, background and previous_response_id are the
        # upstream's (its response ids are its own).
        model = body.get("model")
        call = ChatCall(
            client="responses",
            route=RESPONSES_ROUTE,
            model=str(model),
            stream=body.get("stream") is True,
            include_usage=True,
            body=body,
        )
        return await serve(request, call)
    parsed = parse_responses_request(body)
    response_id = new_response_id()
    request[SUMMARY]["response_id"] = response_id
    store = request.app[STREAM_STORE]
    # Each turn is stored once: its own input and a link to the previous
    # response; a chain's history is rebuilt by following the links.
    context = orjson.dumps(
        {"previous_response_id": parsed.previous_response_id, "input": input_items(body)}
    )
    if parsed.previous_response_id is not None:
        body = await _continue(request, parsed.previous_response_id, body)
    keep = parsed.store is not False
    writer = None
    if keep:
        await store.create(response_id, owner_of(request), context)
        writer = StoreWriter(store, response_id)
    call = ChatCall(
        client="responses",
        route=RESPONSES_ROUTE,
        model=parsed.model,
        stream=parsed.stream or bool(parsed.background),
        include_usage=True,
        body=body,
        response_id=response_id,
        keep=None if parsed.background else writer,
    )
    try:
        if parsed.background:
            assert writer is not None
            queued = response_object(
                body,
                response_id=response_id,
                created_at=int(time.time()),
                status="queued",
                output=[],
            )
            snapshot = orjson.dumps(queued)
            await store.append(response_id, [], snapshot)
            await detach(request, call, writer)
            if parsed.stream:
                return await read_stored(
                    request, response_id, -1, end_with=_failed_event, snapshot=snapshot
                )
            return web.Response(body=snapshot, content_type="application/json")
        response = await serve(request, call)
        if writer is not None and not parsed.stream:
            # Awaited: a GET right after this answer sees it finished.
            raw = response.body if isinstance(response, web.Response) else None
            snapshot = bytes(raw) if isinstance(raw, bytes) else b"{}"
            status = orjson.loads(snapshot).get("status") or StoredStatus.FAILED
            await store.close(response_id, StoredStatus(status), snapshot)
    except GatewayError:
        if keep and not parsed.background:
            await store.delete(response_id)
        raise
    except BaseException:
        # The client left (or a bug): what was stored settles now, so a
        # reader ends and the entry expires (a background generation, which
        # runs on, closes its own).
        if writer is not None and not parsed.background:
            writer.close(StoredStatus.CANCELLED)
        raise
    return response


def _native(request: web.Request, model: object) -> bool:
    """Whether ``model`` is served by an upstream that speaks Responses natively."""
    return isinstance(model, str) and model in request.app[NATIVE_RESPONSES]


MAX_CHAIN = 10_000
"""Links followed at most for one ``previous_response_id`` (a loop guard)."""


async def _continue(request: web.Request, previous_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the history of ``previous_id``'s chain before its own input:
    every earlier turn's input and output, oldest first (OpenAI: the previous
    ``instructions`` are not carried over). Raises 404 when a link has
    expired or belongs to another key, 400 while the previous one runs."""
    turns: list[list[dict[str, Any]]] = []
    current: str | None = previous_id
    while current is not None and len(turns) < MAX_CHAIN:
        stored = await owned(request, current) if current.startswith(RESPONSE_ID_PREFIX) else None
        if stored is None:
            raise StoredNotFound(
                f"Previous response with id '{current}' not found", param="previous_response_id"
            )
        if stored.status.running:
            raise InvalidRequest(
                f"Previous response '{current}' has not finished yet",
                param="previous_response_id",
            )
        own, current = _turn_input(stored.context)
        snapshot = orjson.loads(stored.snapshot or b"{}")
        turns.append([*own, *output_as_input(snapshot)])
    history = [item for turn in reversed(turns) for item in turn]
    return {**body, "input": [*history, *input_items(body)]}


def _turn_input(context: bytes | None) -> tuple[list[dict[str, Any]], str | None]:
    """A stored turn's own input items and the id of the turn before it."""
    value = orjson.loads(context) if context else []
    if isinstance(value, list):  # stored before links: the whole history
        return value, None
    previous = value.get("previous_response_id")
    return list(value.get("input") or []), previous if isinstance(previous, str) else None


async def get_response(request: web.Request) -> web.StreamResponse:
    """The Response object, or (``?stream=true``) its events after ``starting_after``."""
    streamed = request.query.get("stream") in ("true", "1")
    if streamed:
        raw = request.query.get("starting_after", "-1")
        after = event_number(raw, "starting_after", lowest=-1)
    stored = await owned_or_404(request, "response_id", "response", RESPONSE_ID_PREFIX)
    if streamed:
        return await read_stored(
            request, stored.stream_id, after, end_with=_failed_event, resumed=stored
        )
    return web.Response(body=_current(stored), content_type="application/json")


def _failed_event(err: GatewayError, number: int, snapshot: bytes | None) -> bytes:
    """``response.failed`` on the stored Response, numbered ``number``."""
    return failed_event(err, number, orjson.loads(snapshot) if snapshot else {})


def _current(stored: StoredStream) -> bytes:
    """The Response snapshot, with the stream's final status when it ended
    without writing one (a client that left, a producer that stopped)."""
    snapshot = stored.snapshot or b"{}"
    if stored.status.running:
        return snapshot
    response = orjson.loads(snapshot)
    if response.get("status") in (None, *(s.value for s in StoredStatus if s.running)):
        response["status"] = stored.status.value
        return orjson.dumps(response)
    return snapshot


async def cancel_response(request: web.Request) -> web.Response:
    """Stop a background response; returns it (status ``cancelled``)."""
    stored = await owned_or_404(request, "response_id", "response", RESPONSE_ID_PREFIX)
    store = request.app[STREAM_STORE]
    if not request.app[DETACHED].cancel(stored.stream_id):
        if not stored.status.running:
            return web.Response(body=_current(stored), content_type="application/json")
        if not orjson.loads(stored.snapshot or b"{}").get("background"):
            raise InvalidRequest("Only background responses can be cancelled")
        await store.request_cancel(stored.stream_id)  # it runs on another replica
    with contextlib.suppress(TimeoutError, GatewayError):
        async with asyncio.timeout(CANCEL_WAIT_S):
            await _until_ended(store, stored.stream_id, stored.events - 1)
    current = await store.get(stored.stream_id)
    return web.Response(body=_current(current or stored), content_type="application/json")


async def _until_ended(store: StreamStore, stream_id: str, after: int) -> None:
    """Wait until the stored stream has ended (its generation recorded its end)."""
    while True:
        got = await store.read(stream_id, after, READ_WAIT_S)
        if got.ended:
            return
        after += len(got.events)


async def delete_response(request: web.Request) -> web.Response:
    """Remove a stored response (a running one is cancelled first, wherever it runs)."""
    stored = await owned_or_404(request, "response_id", "response", RESPONSE_ID_PREFIX)
    store = request.app[STREAM_STORE]
    if not request.app[DETACHED].cancel(stored.stream_id) and stored.status.running:
        await store.request_cancel(stored.stream_id)  # it runs on another replica
    await store.delete(stored.stream_id)
    body = {"id": stored.stream_id, "object": "response.deleted", "deleted": True}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post(RESPONSES_ROUTE, create_response)
    app.router.add_get(RESPONSES_ROUTE + "/{response_id}", get_response)
    app.router.add_post(RESPONSES_ROUTE + "/{response_id}/cancel", cancel_response)
    app.router.add_delete(RESPONSES_ROUTE + "/{response_id}", delete_response)
