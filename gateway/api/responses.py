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
    continued_input,
    input_items,
    new_response_id,
    parse_responses_request,
    response_object,
)
from ..dialects.translate_responses import failed_event
from ..downstream import StoreWriter
from ..errors import GatewayError, InvalidRequest, ProducerLost, StoredNotFound
from ..state import DETACHED, NATIVE_RESPONSES, SETTINGS, STREAM_STORE, SUMMARY
from ..store.base import StoredStream
from .body import read_json_object
from .chat import ChatCall, detach, serve
from .follow import follow, owned, owned_or_404, owner_of

RESPONSES_ROUTE = "/v1/responses"
CANCEL_WAIT_S = 5.0
"""How long a cancel waits for the generation to record its end."""


async def create_response(request: web.Request) -> web.StreamResponse:
    """Create a model response: streamed (SSE), one Response object, or in the background."""
    body = await read_json_object(request, request.app[SETTINGS].server)
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
    if parsed.previous_response_id is not None:
        body = await _continue(request, parsed.previous_response_id, body)
    keep = parsed.store is not False
    writer = None
    if keep:
        context = orjson.dumps(input_items(body))
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
            await store.append(response_id, [], orjson.dumps(queued))
            await detach(request, call, writer)
            if parsed.stream:
                return await follow(request, response_id, -1, end_with=_failed_event)
            return web.Response(body=orjson.dumps(queued), content_type="application/json")
        response = await serve(request, call)
    except GatewayError:
        if keep:
            await store.delete(response_id)
        raise
    if keep and not parsed.stream and isinstance(response, web.Response) and response.body:
        snapshot = bytes(response.body)  # type: ignore[arg-type]
        status = orjson.loads(snapshot).get("status", "completed")
        await store.close(response_id, status, snapshot)
    return response


def _native(request: web.Request, model: object) -> bool:
    """Whether ``model`` is served by an upstream that speaks Responses natively."""
    return isinstance(model, str) and model in request.app[NATIVE_RESPONSES]


async def _continue(request: web.Request, previous_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the previous response's input and output before its own."""
    previous = await owned(request, previous_id)
    if previous is None:
        raise StoredNotFound(
            f"Previous response with id '{previous_id}' not found", param="previous_response_id"
        )
    if previous.status == "in_progress":
        raise InvalidRequest(
            f"Previous response '{previous_id}' has not finished yet", param="previous_response_id"
        )
    history = orjson.loads(previous.context) if previous.context else []
    snapshot = orjson.loads(previous.snapshot or b"{}")
    return {**body, "input": continued_input(history, snapshot, body)}


async def get_response(request: web.Request) -> web.StreamResponse:
    """The Response object, or (``?stream=true``) its events after ``starting_after``."""
    stored = await owned_or_404(request, "response_id", "response")
    if request.query.get("stream") in ("true", "1"):
        try:
            after = int(request.query.get("starting_after", "-1"))
        except ValueError:
            raise InvalidRequest(
                "'starting_after' must be an integer", param="starting_after"
            ) from None
        return await follow(
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
    if stored.status == "in_progress":
        return snapshot
    response = orjson.loads(snapshot)
    if response.get("status") in ("queued", "in_progress"):
        response["status"] = stored.status
        return orjson.dumps(response)
    return snapshot


async def cancel_response(request: web.Request) -> web.Response:
    """Stop a background response; returns it (status ``cancelled``)."""
    stored = await owned_or_404(request, "response_id", "response")
    store = request.app[STREAM_STORE]
    if not request.app[DETACHED].cancel(stored.stream_id):
        if stored.status != "in_progress":
            return web.Response(body=_current(stored), content_type="application/json")
        if not orjson.loads(stored.snapshot or b"{}").get("background"):
            raise InvalidRequest("Only background responses can be cancelled")
        await store.request_cancel(stored.stream_id)  # it runs on another replica
    with contextlib.suppress(TimeoutError, ProducerLost):
        async with asyncio.timeout(CANCEL_WAIT_S):
            async for _ in store.follow(stored.stream_id, stored.events - 1):
                pass  # until the generation records its end
    current = await store.get(stored.stream_id)
    return web.Response(body=_current(current or stored), content_type="application/json")


async def delete_response(request: web.Request) -> web.Response:
    """Remove a stored response (a running one is cancelled first)."""
    stored = await owned_or_404(request, "response_id", "response")
    request.app[DETACHED].cancel(stored.stream_id)
    await request.app[STREAM_STORE].delete(stored.stream_id)
    body = {"id": stored.stream_id, "object": "response.deleted", "deleted": True}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post(RESPONSES_ROUTE, create_response)
    app.router.add_get(RESPONSES_ROUTE + "/{response_id}", get_response)
    app.router.add_post(RESPONSES_ROUTE + "/{response_id}/cancel", cancel_response)
    app.router.add_delete(RESPONSES_ROUTE + "/{response_id}", delete_response)
