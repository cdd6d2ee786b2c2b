"""Reading a stored stream back: replay, then follow live, a drain per event.

Shared by ``GET /v1/responses/{id}?stream=true`` (Responses events carry
their own ``sequence_number``) and ``GET /v1/streams/{id}`` (resumable Chat
Completions streams, whose events get an SSE ``id: n``, n from 1, so a
browser's ``Last-Event-ID`` resumes them; WHATWG HTML, "Server-sent events").
"""

from __future__ import annotations

from aiohttp import web

from ..sse import SSEResponse
from ..state import KEY, SETTINGS, STREAM_STORE
from ..store.base import StoredStream

STREAM_ID_HEADER = "Sluice-Stream-Id"


def owner_of(request: web.Request) -> str | None:
    """The caller's key name (None without keys): a stored stream belongs to
    the key that created it; any other gets 404."""
    key = request.get(KEY)
    return key.name if key is not None else None


async def owned(request: web.Request, stream_id: str) -> StoredStream | None:
    """The stored stream if it exists and belongs to the caller's key, else None
    (the caller answers 404 either way: another key's streams are not revealed)."""
    stored = await request.app[STREAM_STORE].get(stream_id)
    if stored is None or stored.owner != owner_of(request):
        return None
    return stored


async def follow(
    request: web.Request, stream_id: str, after: int, *, with_ids: bool = False
) -> web.StreamResponse:
    """An SSE response with the stored events numbered above ``after`` (0-based),
    then the live ones until the stream ends. ``with_ids``: each event gets
    ``id: <number + 1>``."""
    stream = request.app[SETTINGS].stream
    sse = SSEResponse(
        request,
        buffer_bytes=stream.downstream_buffer_bytes,
        send_timeout_s=stream.send_timeout_s,
    )
    if with_ids:
        sse.response.headers[STREAM_ID_HEADER] = stream_id
    await sse.prepare()
    number = after + 1
    try:
        async for event in request.app[STREAM_STORE].follow(stream_id, after):
            number += 1
            await sse.send(b"id: %d\n%b" % (number, event) if with_ids else event)
    except ConnectionError:
        sse.abort()
    await sse.finish()
    return sse.response
