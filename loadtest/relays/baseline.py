"""A deliberately unbounded SSE relay: the control for the backpressure proof.

It forwards upstream bytes to the client as they arrive with
``transport.write()`` (HTTP chunked framing by hand; never a drain), so a
client that does not read makes it buffer without limit: the design that
docs/architecture.md calls out as not bounding memory.
Never use this for anything but a comparison; the load test stops it once its
RSS passes a bound.

Run: ``python -m loadtest.relays.baseline --port 9100 --upstream http://127.0.0.1:9000``.
"""

from __future__ import annotations

import argparse
import contextlib

from aiohttp import web

from loadtest.relays.app import SESSION, UPSTREAM, relay_app

from .. import cli


async def _relay(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    body = await request.read()
    url = request.app[UPSTREAM] + request.path
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as up:
        resp = web.StreamResponse(
            status=up.status,
            headers={"Content-Type": up.headers.get("Content-Type", "text/event-stream")},
        )
        await resp.prepare(request)
        transport = request.transport
        with contextlib.suppress(ConnectionError):
            async for chunk in up.content.iter_any():
                if transport is None or transport.is_closing():
                    break
                # Chunked framing by hand; transport.write() and never a drain: unbounded.
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await resp.write_eof()
    return resp


def create_baseline_app(upstream: str) -> web.Application:
    """The unbounded relay in front of ``upstream`` (base URL without a path)."""
    return relay_app(upstream, _relay, ["/v1/chat/completions", "/v1/messages"])


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest.relays.baseline`` command line."""
    p = cli.parser("loadtest.relays.baseline", __doc__)
    cli.add_listen(p, 9100)
    p.add_argument(
        "--upstream", default="http://127.0.0.1:9000", help="upstream base URL, without a path"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    web.run_app(
        create_baseline_app(args.upstream),
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
        print=lambda _m: print(f"baseline relay on http://{args.host}:{args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
