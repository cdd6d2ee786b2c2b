"""Reading a stored stream back: one more :class:`~gateway.stream.Stream`.

Shared by ``GET /v1/responses/{id}?stream=true`` (Responses events carry
their own ``sequence_number``), ``GET /v1/streams/{id}`` (resumable Chat
Completions streams, whose events get an SSE ``id: n``, n from 1, so a
browser's ``Last-Event-ID`` resumes them; WHATWG HTML, "Server-sent events")
and the first reader of a resumable or background stream. The stored events
are the upstream (:mod:`gateway.stored_upstream`); admission, the key's
limits, heartbeats, timers, the slow-client rule, metrics and the error
event are the stream core's, as for a live request.
"""

from __future__ import annotations

import time

from aiohttp import web

from ..attempts import Target
from ..dialects.openai import error_event
from ..errors import GatewayError, InvalidRequest, StoredNotFound
from ..middleware import route_of
from ..recorder import make_replay_recorder
from ..sse import SSEResponse
from ..state import ADMISSION, ARRIVAL, KEY, METRICS, SETTINGS, STREAM_STORE
from ..store.base import MAX_EVENT_NUMBER, StoredStream
from ..stored_upstream import READ_WAIT_S, ErrorEvent, StoredEncoder, StoredProvider
from ..stream import Stream
from ..timing import StreamClock
from .hold import run_stream

STREAM_ID_HEADER = "Sluice-Stream-Id"
REPLAY_MODEL = "stored"
"""The ``model`` label of a stored stream's reader (its generation is counted
under its own model; a reader's tokens are not counted again)."""


def chat_error_event(err: GatewayError, number: int, snapshot: bytes | None) -> bytes:
    """A Chat Completions stream's error event (the OpenAI error object)."""
    return error_event(err)


def owner_of(request: web.Request) -> str | None:
    """Who owns what the caller stores (None without keys): the SHA-256 of the
    caller's secret, not its name. A stored stream belongs to the secret that
    created it: a key rotated to a new secret under the same name does not
    inherit the old secret's streams, and any other caller gets 404."""
    key = request.get(KEY)
    return key.sha256 if key is not None else None


async def owned_or_404(request: web.Request, param: str, noun: str, prefix: str) -> StoredStream:
    """The stored stream named by the route's ``param`` if the caller owns it
    and its id has ``prefix`` (an id is found only through its own API).
    Raises :class:`~gateway.errors.StoredNotFound` (404, naming ``noun`` and
    the id) otherwise."""
    stream_id = request.match_info[param]
    stored = await owned(request, stream_id) if stream_id.startswith(prefix) else None
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


def event_number(raw: str, param: str, *, lowest: int) -> int:
    """``raw`` as an event number (``starting_after``, ``Last-Event-ID``):
    an integer from ``lowest`` to :data:`~gateway.store.base.MAX_EVENT_NUMBER`.
    Raises :class:`~gateway.errors.InvalidRequest` (400) naming ``param``."""
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not lowest <= value <= MAX_EVENT_NUMBER:
        raise InvalidRequest(
            f"'{param}' must be an integer from {lowest} to {MAX_EVENT_NUMBER}", param=param
        )
    return value


async def read_stored(
    request: web.Request,
    stream_id: str,
    after: int,
    *,
    end_with: ErrorEvent,
    with_ids: bool = False,
    resumed: StoredStream | None = None,
    snapshot: bytes | None = None,
) -> web.StreamResponse:
    """An SSE response with the stored events numbered above ``after`` (0-based),
    then the live ones until the stream ends. ``with_ids``: each event gets
    ``id: <number + 1>``.

    ``resumed``: the stream as read when a client came back for it (a resume,
    not the first reader): the request is counted against the key's limits,
    in ``sluice_stream_resumes_total``, and its events already stored in
    ``sluice_stream_replayed_events_total``. The first reader (``resumed``
    None) rides on its generation's ticket.

    A store that cannot go on after the response started (Redis unreachable,
    the producer lost: :class:`~gateway.errors.ProducerLost`) ends it with
    ``end_with``'s event: the reader gets a typed error, never a hang.
    Before the first event it is an HTTP error, like an upstream's."""
    app = request.app
    settings = app[SETTINGS]
    route = route_of(request)
    metrics = app[METRICS] if settings.server.metrics_enabled else None
    if resumed is not None and metrics is not None:
        metrics.stream_resumes.labels(route).inc()
    base = settings.stream
    # The generation keeps its own timers; a reader waits for as long as the
    # generation may run, and a little longer, so the generation's own end
    # (its deadline's error event, say) reaches it first.
    longest = max([base.deadline_s, *(settings.stream_for(m).deadline_s for m in settings.models)])
    patience = longest + 2 * READ_WAIT_S
    encoder = StoredEncoder(
        after,
        with_ids=with_ids,
        end_with=end_with,
        snapshot=snapshot if resumed is None else resumed.snapshot,
    )
    target = Target(
        model=REPLAY_MODEL,
        provider=StoredProvider(app[STREAM_STORE], stream_id, after),
        body={},
        encoder=encoder,
        settings=base.model_copy(
            update={"ttft_timeout_s": patience, "idle_timeout_s": patience, "deadline_s": patience}
        ),
    )
    sse = SSEResponse(
        request, buffer_bytes=base.downstream_buffer_bytes, send_timeout_s=base.send_timeout_s
    )
    if with_ids:
        sse.response.headers[STREAM_ID_HEADER] = stream_id
    recorder = make_replay_recorder(metrics, model=REPLAY_MODEL, route=route)
    clock = StreamClock(request.get(ARRIVAL, time.perf_counter()))
    stream = Stream(sse, (target,), clock, recorder, app[ADMISSION])
    try:
        await run_stream(request, stream, None, charge_key=resumed is not None, charge_tokens=False)
    finally:
        if resumed is not None and metrics is not None:
            replayed = min(encoder.relayed, resumed.events - (after + 1))
            if replayed > 0:
                metrics.replayed_events.labels(route).inc(replayed)
    return sse.response
