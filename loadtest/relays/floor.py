"""The floor: the smallest correct SSE relay, the yardstick for Sluice's hot path.

``POST /v1/chat/completions`` forwards the request body to the upstream on one
shared ``aiohttp.ClientSession``, opens a ``web.StreamResponse`` with SSE
headers and, for each complete upstream SSE event (lines read from
``resp.content`` up to the blank line that ends an event), does
``await response.write(event)`` then ``await request.writer.drain()``.
``write()`` alone only drains after 64 KiB (docs/architecture.md, "Facts the
design rests on"), so the explicit drain is what makes each event wait for the client's
socket: a client that stops reading stops this relay pulling from upstream
(bounded by aiohttp's own buffers: the client payload reader pauses its
socket at 128 KiB, plus the kernel queues). It runs with
``handler_cancellation=True``, so a client that leaves cancels the handler,
which closes the upstream response (and its TCP connection) at once.

Nothing else: no metrics, no parsing beyond event boundaries, no timeouts, no
admission, no error mapping. Whatever Sluice spends above this is the price
of its features (and of its implementation); :mod:`loadtest.scenarios.hotpath` measures
that price.

Unlike :mod:`loadtest.relays.baseline`, which writes without ever draining and
exists only to show memory growing without bound under stalled clients, this
relay is bounded and correct; the two are kept for different comparisons.

By default it runs on asyncio's own event loop; ``--uvloop`` puts it on
uvloop's, to compare like with like against a gateway that runs on uvloop.

Run: ``python -m loadtest.relays.floor --port 9200 --upstream http://127.0.0.1:9000``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Final

from aiohttp import web

from loadtest.relays.app import SESSION, UPSTREAM, relay_app

from .. import cli

SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_EVENT_END: Final = (b"\n", b"\r\n")


async def _relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    url = request.app[UPSTREAM] + "/v1/chat/completions"
    up = await request.app[SESSION].post(
        url, data=body, headers={"Content-Type": "application/json"}
    )
    resp: web.StreamResponse | None = None
    try:
        if up.status != 200:
            return web.Response(
                status=up.status, body=await up.read(), content_type="application/json"
            )
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        writer = request.writer
        lines: list[bytes] = []
        async for line in up.content:
            lines.append(line)
            if line in _EVENT_END:
                await resp.write(b"".join(lines))
                lines.clear()
                # The backpressure: the next event is read only once the socket took this one.
                await writer.drain()
        if lines:
            await resp.write(b"".join(lines))
        await resp.write_eof()
        up.release()
        return resp
    except ConnectionError:
        # The client left during a write: close upstream and end quietly (aiohttp
        # logs a handler that raises ConnectionError as a server error).
        up.close()
        return resp if resp is not None else web.Response(status=502)
    except BaseException:
        # Cancelled (client gone, handler_cancellation) or anything else: close the
        # upstream connection synchronously, first, so it stops streaming now.
        up.close()
        raise


def create_floor_app(upstream: str) -> web.Application:
    """The floor relay in front of ``upstream`` (base URL without a path).

    Serve it with ``handler_cancellation=True`` (``main`` does; so does
    aiohttp's test server), or a client that leaves is noticed only at the
    next write.
    """
    return relay_app(upstream, _relay, ["/v1/chat/completions"])


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("loadtest.relays.floor", __doc__)
    cli.add_listen(p, 9200)
    p.add_argument(
        "--upstream", required=True, help="upstream base URL, e.g. http://127.0.0.1:9000"
    )
    p.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop's event loop (as the gateway does when uvloop is installed)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    loop: asyncio.AbstractEventLoop | None = None
    if args.uvloop:
        import uvloop  # only when asked: a gateway dependency, not the floor's

        loop = uvloop.new_event_loop()
    web.run_app(
        create_floor_app(args.upstream),
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        backlog=4096,  # the gateway's default [server] backlog; the kernel caps it at somaxconn
        shutdown_timeout=1.0,
        loop=loop,
        print=lambda _m: print(f"floor relay on http://{args.host}:{args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
