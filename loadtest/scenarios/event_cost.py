"""Per-event CPU of the relay's pure-Python steps, in one process, in µs.

Each *stage* runs the same SSE frames through one step of the same-dialect
(passthrough) path: the SSE decoder, the provider's decode (JSON parse and
error check), the dialect encoder, and all three together; ``floor`` is what
a minimal relay does per event (one concatenation). Stages run interleaved,
``--rounds`` times, and the best round counts (the figure least disturbed by
other processes on the machine). Ratios between stages of one run are the
figures to compare; absolute µs move with the machine.

For figures that hold while the machine is loaded, count instructions::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m loadtest event_cost --only openai.encode --events 20000

and subtract the ``--only none`` run (interpreter start-up and imports):
the difference divided by ``--events`` is instructions per event.

Usage: ``python -m loadtest event_cost [--events 20000] [--rounds 7] [--only STAGE]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from orjson import loads

from gateway.dialects.anthropic import AnthropicPassthrough
from gateway.dialects.openai import OpenAIPassthrough
from gateway.providers.anthropic import AnthropicStream
from gateway.providers.base import UpstreamChunk
from gateway.providers.openai import OpenAIStream
from gateway.providers.sse_decoder import SSEDecoder, SSEEvent
from loadtest import cli
from loadtest.mock.frames import FrameSet, token_text

Stage = Callable[[int], None]
"""Runs a stage over ``n`` events."""


def frames(dialect: str, n: int) -> list[bytes]:
    """``n`` content frames as the mock upstream sends them (one token each)."""
    fs = FrameSet(dialect, "chatcmpl-bench", "bench-model", 10)  # type: ignore[arg-type]
    return [fs.token(token_text(i, 0)) for i in range(n)]


def _events(raw: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for frame in raw for event in decoder.feed(frame)]


def _stream(cls: type[OpenAIStream] | type[AnthropicStream]) -> OpenAIStream | AnthropicStream:
    """A provider stream with no response: only :meth:`decode` is called."""
    stream = cls.__new__(cls)
    stream.finished = False
    return stream


def stages(n: int) -> dict[str, Stage]:
    """The stages, by name, each over the same ``n`` frames of its dialect."""
    out: dict[str, Stage] = {}
    for dialect, cls in (("openai", OpenAIStream), ("anthropic", AnthropicStream)):
        raw = frames(dialect, n)
        events = _events(raw)
        stream = _stream(cls)
        chunks = [c for c in map(stream.decode, events) if c is not None]

        def make_encoder(dialect: str = dialect) -> OpenAIPassthrough | AnthropicPassthrough:
            if dialect == "openai":
                return OpenAIPassthrough(include_usage=False, body={})
            return AnthropicPassthrough({})

        def floor(k: int, raw: list[bytes] = raw) -> None:
            for frame in raw[:k]:
                b"data: " + frame + b"\n\n"

        def feed(k: int, raw: list[bytes] = raw) -> None:
            decoder = SSEDecoder()
            for frame in raw[:k]:
                decoder.feed(frame)

        def decode(k: int, events: list[SSEEvent] = events, stream: object = stream) -> None:
            dec = stream.decode  # type: ignore[attr-defined]
            for event in events[:k]:
                dec(event)

        def encode(
            k: int, chunks: list[UpstreamChunk] = chunks, make: object = make_encoder
        ) -> None:
            enc = make().encode  # type: ignore[operator]
            for chunk in chunks[:k]:
                enc(chunk)

        def path(
            k: int, raw: list[bytes] = raw, stream: object = stream, make: object = make_encoder
        ) -> None:
            decoder, dec, enc = SSEDecoder(), stream.decode, make().encode  # type: ignore[attr-defined,operator]
            for frame in raw[:k]:
                for event in decoder.feed(frame):
                    chunk = dec(event)
                    if chunk is not None:
                        enc(chunk)

        for name, stage in (("floor", floor), ("feed", feed), ("decode", decode),
                            ("encode", encode), ("path", path)):  # fmt: skip
            out[f"{dialect}.{name}"] = stage
    raw = frames("openai", n)
    out["openai.scan"] = lambda k: _scan(raw[:k], validate=False)
    out["openai.scan_valid"] = lambda k: _scan(raw[:k], validate=True)
    return out


def _scan(raw: list[bytes], *, validate: bool) -> None:
    """The issue's "passthrough that does not parse", at its cheapest: a
    whole ``data: {...}\n\n`` read is relayed as it came; what the gateway
    must know is found by byte scans (content, usage, error), and only an
    event that carries usage or an error would be parsed. ``validate``:
    each event still goes through ``orjson.loads`` (a non-JSON event must
    end the stream in a typed error; ``tests/test_hostile_upstream.py``)."""
    for frame in raw:
        if frame.startswith(b"data: ") and frame.endswith(b"\n\n") and frame.count(b"\n") == 2:
            if validate:
                loads(frame[6:-2])
            content = frame.find(b'"content":"') >= 0
            if frame.find(b'"usage"') >= 0 or frame.find(b'"error"') >= 0:
                loads(frame[6:-2])
            _frame = (frame, content, None)  # what the relay would get


def measure(run: dict[str, Stage], n: int, rounds: int) -> dict[str, float]:
    """Best µs per event of each stage over ``rounds`` interleaved rounds."""
    best = dict.fromkeys(run, float("inf"))
    for _ in range(rounds):
        for name, stage in run.items():
            start = time.process_time()
            stage(n)
            best[name] = min(best[name], (time.process_time() - start) / n * 1e6)
    return best


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest event_cost`` command line."""
    parser = cli.parser("loadtest event_cost", __doc__)
    parser.add_argument("--events", type=int, default=20000, help="events per stage and round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best one counts")
    parser.add_argument(
        "--only",
        metavar="STAGE",
        help="run one stage once and print nothing (for callgrind); 'none' runs no stage",
    )
    cli.add_quick(parser, events=2000, rounds=1)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = stages(args.events)
    if args.only is not None:
        if args.only != "none":
            run[args.only](args.events)
        return
    best = measure(run, args.events, args.rounds)
    for name, us in best.items():
        floor = best[name.split(".")[0] + ".floor"]
        print(f"{name:20s} {us:7.3f} us/event  {us / floor:6.2f}x floor")


if __name__ == "__main__":
    main()
