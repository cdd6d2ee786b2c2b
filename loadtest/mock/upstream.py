"""Mock upstream LLM server: OpenAI- and Anthropic-compatible SSE with pacing,
fault injection and per-request records.

Run: ``python -m loadtest.mock.upstream --port 9000 --ttft-ms 50 --itl-ms 20``.
Reuse: ``create_mock_app(MockConfig(...))`` returns a ``web.Application``
(pytest: ``await aiohttp_server(create_mock_app())``).

Endpoints:

- ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic),
  streaming when the body says ``"stream": true``. The scenario (TTFT, ITL,
  tokens, jitter, fault) comes from :mod:`loadtest.mock.scenario`.
- ``GET /_mock/records``: JSON ``{"records": [...]}``, one per request: ids,
  frames and bytes written, bytes drained, drain waits, when the peer closed
  (monotonic and wall clock), outcome.
- ``POST /_mock/reset``: forget all records.

Tokens are paced by absolute monotonic deadlines, ``t_first + i * itl``
(jitter is added to the deadline, never accumulated), so a late wake-up does
not delay later tokens. Every write is followed by a drain, so the mock feels
the gateway's backpressure and records it. The server must run with
``handler_cancellation=True`` (the CLI and aiohttp's test server do) to see a
peer close while it is waiting between tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from loadtest.mock.frames import Dialect, FrameSet, completion_body, http_error_body, token_text
from loadtest.mock.scenario import (
    FAULTS,
    MockScenario,
    ScenarioError,
    client_id_from_text,
    resolve,
)

from .. import cli

_YIELD_EVERY: Final = 64  # tokens written back to back before yielding to the loop
_DRAIN_WAIT_MIN_S: Final = 0.0001


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Server-wide settings; ``scenario`` is the default every request starts from."""

    scenario: MockScenario = field(default_factory=MockScenario)
    seed: int = 0
    max_records: int = 200_000


@dataclass(slots=True)
class StreamRecord:
    """What the mock saw of one request. Times: ``*_mono`` from time.monotonic()
    (comparable across processes on one Linux host), ``*_wall`` from time.time()."""

    request_id: str
    client_id: str | None
    dialect: str
    stream: bool
    scenario: str
    started_mono: float
    started_wall: float
    status: int = 200
    first_token_mono: float | None = None
    frames_written: int = 0
    bytes_written: int = 0
    bytes_drained: int = 0
    drain_waits: int = 0
    drain_wait_s: float = 0.0
    peer_closed_mono: float | None = None
    peer_closed_wall: float | None = None
    ended_mono: float | None = None
    completed: bool = False
    outcome: str = "running"


@dataclass(slots=True)
class MockState:
    config: MockConfig
    records: OrderedDict[str, StreamRecord] = field(default_factory=OrderedDict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    rng: random.Random = field(default_factory=random.Random)

    def new_record(self, **kwargs: Any) -> StreamRecord:
        rid = f"mock-{next(self.ids)}"
        rec = StreamRecord(request_id=rid, **kwargs)
        self.records[rid] = rec
        while len(self.records) > self.config.max_records:
            self.records.popitem(last=False)
        return rec


STATE: Final = web.AppKey("mock_state", MockState)


def _prompt_text(body: dict[str, Any]) -> str:
    """All text of the request's messages (and Anthropic ``system``), joined."""
    parts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        parts.append(system)
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b
            )
    return "\n".join(parts)


async def _read_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="body is not JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def _handle(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_body(request)
    text = _prompt_text(body)
    model = str(body.get("model", "mock"))
    try:
        sc = resolve(state.config.scenario, model, text, request.headers)
    except ScenarioError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    stream = bool(body.get("stream", False))
    rec = state.new_record(
        client_id=client_id_from_text(text),
        dialect=dialect,
        stream=stream,
        scenario=sc.directive(),
        started_mono=time.monotonic(),
        started_wall=time.time(),
    )
    try:
        if sc.fault in ("http_503", "http_429"):
            return _http_fault(rec, sc, dialect)
        input_tokens = max(1, len(text) // 4)
        frames = FrameSet(
            dialect,
            f"{'chatcmpl' if dialect == 'openai' else 'msg'}-{rec.request_id}",
            model,
            input_tokens,
            _include_usage(body),
        )
        if stream:
            return await _stream(request, rec, sc, frames, state.rng)
        return await _complete(request, rec, sc, frames)
    except asyncio.CancelledError:
        _peer_closed(rec)
        raise
    except ConnectionError:
        # A write found the peer gone. Leave quietly: to aiohttp a handler that
        # raises ConnectionError is a server error (500 + traceback in the log).
        _peer_closed(rec)
        raise asyncio.CancelledError from None
    finally:
        rec.ended_mono = time.monotonic()


def _peer_closed(rec: StreamRecord) -> None:
    if rec.peer_closed_mono is None and rec.outcome == "running":
        rec.peer_closed_mono, rec.peer_closed_wall = time.monotonic(), time.time()
        rec.outcome = "peer_closed"


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


def _http_fault(rec: StreamRecord, sc: MockScenario, dialect: Dialect) -> web.Response:
    status = 429 if sc.fault == "http_429" else 503
    rec.status, rec.outcome, rec.completed = status, sc.fault, True
    return web.Response(
        status=status,
        body=http_error_body(dialect, status),
        content_type="application/json",
        headers={"Retry-After": str(sc.retry_after_s)},
    )


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _stream(
    request: web.Request,
    rec: StreamRecord,
    sc: MockScenario,
    frames: FrameSet,
    rng: random.Random,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    writer = request.writer

    async def send(data: bytes) -> None:
        rec.bytes_written += len(data)
        await resp.write(data)
        t0 = loop.time()
        await writer.drain()
        waited = loop.time() - t0
        if waited > _DRAIN_WAIT_MIN_S:
            rec.drain_waits += 1
            rec.drain_wait_s += waited
        rec.bytes_drained = rec.bytes_written

    head = frames.head()
    if frames.dialect == "anthropic":
        await send(head)  # Anthropic sends message_start before the first token.
        head = b""
    t_first = start + sc.ttft_ms / 1000.0
    itl_s, jit_s = sc.itl_ms / 1000.0, sc.jitter_ms / 1000.0
    fault_at = sc.fault_index if sc.fault != "none" else -1
    prev_deadline = 0.0
    for i in range(sc.tokens):
        if i == fault_at:
            return await _mid_fault(request, resp, rec, sc, frames, send)
        deadline = t_first + i * itl_s
        if jit_s:
            deadline = max(prev_deadline, deadline + rng.uniform(-jit_s, jit_s))
        prev_deadline = deadline
        if deadline > loop.time():
            await _sleep_until(loop, deadline)
        elif i % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
        frame = frames.token(token_text(i, sc.token_bytes))
        if i == 0:
            rec.first_token_mono = loop.time()
            frame = head + frame
        await send(frame)
        rec.frames_written += 1
    if fault_at == sc.tokens:
        return await _mid_fault(request, resp, rec, sc, frames, send)
    if sc.tokens == 0:
        await _sleep_until(loop, t_first)
    await send(head + frames.tail(sc.tokens) if sc.tokens == 0 else frames.tail(sc.tokens))
    await resp.write_eof()
    rec.completed, rec.outcome = True, "completed"
    return resp


async def _mid_fault(
    request: web.Request,
    resp: web.StreamResponse,
    rec: StreamRecord,
    sc: MockScenario,
    frames: FrameSet,
    send: Any,
) -> web.StreamResponse:
    rec.outcome = sc.fault
    if sc.fault == "error_mid":
        await send(frames.error())
        resp.force_close()
        await resp.write_eof()
        rec.completed = True
        return resp
    if sc.fault == "stall_mid":
        await asyncio.sleep(sc.stall_s)
    # close_mid, or a stall that ran out: drop the connection without an end marker.
    rec.completed = True
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError  # nothing more can be written; aiohttp drops the request


async def _complete(
    request: web.Request, rec: StreamRecord, sc: MockScenario, frames: FrameSet
) -> web.StreamResponse:
    delay = (sc.ttft_ms + max(0, sc.tokens - 1) * sc.itl_ms) / 1000.0
    if sc.fault == "stall_mid":
        delay += sc.stall_s
    await asyncio.sleep(delay)
    if sc.fault in ("stall_mid", "close_mid"):
        rec.outcome, rec.completed = sc.fault, True
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError
    if sc.fault == "error_mid":
        rec.outcome, rec.completed, rec.status = sc.fault, True, 503
        return web.Response(
            status=503, body=http_error_body(frames.dialect, 503), content_type="application/json"
        )
    text = b"".join(token_text(i, sc.token_bytes) for i in range(sc.tokens)).decode()
    body = completion_body(
        frames.dialect, frames.stream_id, frames.model, text, frames.input_tokens, sc.tokens
    )
    rec.frames_written, rec.bytes_written = sc.tokens, len(body)
    rec.completed, rec.outcome = True, "completed"
    return web.Response(body=body, content_type="application/json")


async def _openai(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "openai")


async def _anthropic(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "anthropic")


async def _records(request: web.Request) -> web.Response:
    state = request.app[STATE]
    recs = [asdict(r) for r in state.records.values()]
    return web.Response(body=orjson.dumps({"records": recs}), content_type="application/json")


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].records.clear()
    return web.json_response({"ok": True})


def create_mock_app(config: MockConfig | None = None) -> web.Application:
    """The mock upstream as an aiohttp application (run it with handler_cancellation=True)."""
    cfg = config or MockConfig()
    app = web.Application(client_max_size=8 << 20)
    app[STATE] = MockState(cfg, rng=random.Random(cfg.seed))
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", _openai)
        app.router.add_post(f"{prefix}/messages", _anthropic)
    app.router.add_get("/_mock/records", _records)
    app.router.add_post("/_mock/reset", _reset)
    return app


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest.mock.upstream`` command line (every option with its default)."""
    d = MockScenario()
    p = cli.parser("loadtest.mock.upstream", __doc__)
    cli.add_listen(p, 9000)
    p.add_argument(
        "--ttft-ms",
        type=float,
        default=d.ttft_ms,
        help="ms from the request to the first content token",
    )
    p.add_argument(
        "--itl-ms",
        type=float,
        default=d.itl_ms,
        help="ms between content tokens, 0: back to back",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=d.tokens,
        help="content tokens per stream",
    )
    p.add_argument(
        "--jitter-ms",
        type=float,
        default=d.jitter_ms,
        help="each token's deadline moves by a uniform random +-this many ms, never accumulated",
    )
    p.add_argument(
        "--token-bytes",
        type=int,
        default=d.token_bytes,
        help="pad each token's text to this many bytes, 0: short words",
    )
    p.add_argument(
        "--fault",
        default=d.fault,
        choices=FAULTS,
        help="what goes wrong: an HTTP error before the stream, an error event, a stall"
        " or a closed connection mid-stream",
    )
    p.add_argument(
        "--fault-at",
        type=int,
        default=d.fault_at,
        help="content-token index where a mid-stream fault fires, -1: half way",
    )
    p.add_argument(
        "--retry-after",
        type=int,
        default=d.retry_after_s,
        help="Retry-After seconds sent with http_429 / http_503",
    )
    p.add_argument(
        "--stall-s",
        type=float,
        default=d.stall_s,
        help="how long stall_mid stalls before closing, s",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter's RNG")
    p.add_argument(
        "--max-records",
        type=int,
        default=200_000,
        help="per-request records kept for GET /_mock/records, oldest dropped",
    )
    p.add_argument(
        "--backlog",
        type=int,
        default=8192,
        help="listen() backlog: connections queued before accept",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> MockConfig:
    scenario = MockScenario().with_overrides(
        {
            "ttft_ms": str(args.ttft_ms),
            "itl_ms": str(args.itl_ms),
            "tokens": str(args.tokens),
            "jitter_ms": str(args.jitter_ms),
            "token_bytes": str(args.token_bytes),
            "fault": args.fault,
            "fault_at": str(args.fault_at),
            "retry_after_s": str(args.retry_after),
            "stall_s": str(args.stall_s),
        }
    )
    return MockConfig(scenario=scenario, seed=args.seed, max_records=args.max_records)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = create_mock_app(config_from_args(args))
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        backlog=args.backlog,
        shutdown_timeout=1.0,
        print=lambda _msg: print(
            f"mock upstream listening on http://{args.host}:{args.port}", flush=True
        ),
    )


if __name__ == "__main__":
    main()
