"""The head-of-line benchmark's processes and load
(:mod:`loadtest.scenarios.headofline` says what is measured): its upstream
(paced small streams; a large body read whole, answered with one event),
the floor relay with 64 MiB bodies, the small streams and large prompts of
one phase (:func:`run_phase`), the RSS burst (:func:`burst`) and the
in-process cost per stage of a large body (:func:`stages`)."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from loadtest import procs

LARGE: Final = 256 << 10
BODY_LIMIT: Final = 64 << 20
CHAT: Final = "/v1/chat/completions"


# -- the upstream and the floor (child processes) --------------------------------------


def _chunk(text: str, usage: bool = False) -> bytes:
    payload: dict[str, Any] = {
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "mock",
        "choices": [] if usage else [{"index": 0, "delta": {"content": text}}],
    }  # fmt: skip
    if usage:
        payload["usage"] = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def upstream_app(events: int, itl_s: float) -> web.Application:
    """Paced streams for small bodies, one event at once for large ones."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        n = 1 if len(body) > LARGE else events
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(n):
            if i:
                await asyncio.sleep(max(0.0, start + i * itl_s - loop.time()))
            await resp.write(_chunk(f"tok{i} "))
        await resp.write(_chunk("", usage=True) + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=BODY_LIMIT)
    app.router.add_post(CHAT, handle)
    app.router.add_get("/healthz", _ok)
    return app


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def serve_floor(port: int, upstream: str) -> None:
    from loadtest.relays.floor import create_floor_app

    app = create_floor_app(upstream)
    app._client_max_size = BODY_LIMIT  # the floor relay's own 1 MiB default, raised
    web.run_app(app, host=procs.HOST, port=port, handler_cancellation=True,
                access_log=None, print=None)  # fmt: skip


# -- the load ------------------------------------------------------------------------


def agent_prompt(mb: float) -> bytes:
    """An agent-like Chat Completions request of about ``mb`` MB."""
    turn = "def handler(request):\n    return respond(request, 'ok')  # \"quoted\" text\n" * 160
    messages = [{"role": "system", "content": "You are a coding agent."}]
    size = 0
    while size < mb * 1e6:
        role = "user" if len(messages) % 2 else "assistant"
        messages.append({"role": role, "content": f"turn {len(messages)}\n{turn}"})
        size += len(turn) + 40
    body = {"model": procs.OPENAI_MODEL, "stream": True, "max_tokens": 1, "messages": messages}
    return orjson.dumps(body)


SMALL: Final = orjson.dumps(
    {
        "model": procs.OPENAI_MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


@dataclass
class Phase:
    gaps: list[float] = field(default_factory=list)
    prompts: int = 0
    prompt_errors: dict[str, int] = field(default_factory=dict)
    stream_errors: int = 0


async def _small(session: aiohttp.ClientSession, url: str, phase: Phase, stop: float) -> None:
    while time.monotonic() < stop:
        try:
            async with session.post(url, data=SMALL, headers=_JSON) as resp:
                if resp.status != 200:  # no events: no gaps, so it must count
                    phase.stream_errors += 1
                    await resp.read()
                    continue
                last = None
                buf = b""
                async for data in resp.content.iter_any():
                    now = time.perf_counter()
                    buf += data
                    n = buf.count(b"\n\n")
                    if not n:
                        continue
                    buf = buf[buf.rfind(b"\n\n") + 2 :]
                    if last is not None:
                        phase.gaps.append(now - last)
                    last = now
        except aiohttp.ClientError:
            phase.stream_errors += 1


_JSON: Final = {"Content-Type": "application/json"}


async def _large(
    session: aiohttp.ClientSession, url: str, prompt: bytes, phase: Phase, stop: float
) -> None:
    while time.monotonic() < stop:
        try:
            async with session.post(url, data=io.BytesIO(prompt), headers=_JSON) as resp:
                await resp.read()
                if resp.status == 200:
                    phase.prompts += 1
                else:
                    key = str(resp.status)
                    phase.prompt_errors[key] = phase.prompt_errors.get(key, 0) + 1
        except aiohttp.ClientError as exc:
            key = type(exc).__name__
            phase.prompt_errors[key] = phase.prompt_errors.get(key, 0) + 1


async def run_phase(base: str, prompt: bytes | None, args: argparse.Namespace) -> Phase:
    phase = Phase()
    url = base + CHAT
    stop = time.monotonic() + args.phase_s
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout()) as s:
        tasks = [_small(s, url, phase, stop) for _ in range(args.streams)]
        if prompt is not None:
            await asyncio.sleep(0.3)  # the small streams run first
            tasks.append(_large(s, url, prompt, phase, stop))
        await asyncio.gather(*tasks)
    return phase


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def burst(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """``--burst`` 32 MB prompts at once; Sluice's peak RSS over idle."""
    prompt = agent_prompt(32)
    idle = _vm(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # noqa: ASYNC230
        f.write("5")  # reset VmHWM to the current RSS
    statuses: dict[str, int] = {}

    async def one(s: aiohttp.ClientSession) -> None:
        try:
            async with s.post(base + CHAT, data=io.BytesIO(prompt), headers=_JSON) as resp:
                await resp.read()
                key = str(resp.status)
        except aiohttp.ClientError as exc:
            key = type(exc).__name__
        statuses[key] = statuses.get(key, 0) + 1

    conn = aiohttp.TCPConnector(limit=0)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout()) as s:
        await asyncio.gather(*(one(s) for _ in range(args.burst)))
    peak = _vm(pid, "VmHWM")
    budget = args.budget_mib << 20
    return {
        "prompts": args.burst,
        "prompt_bytes": len(prompt),
        "statuses": statuses,
        "seconds": time.monotonic() - t0,
        "idle_rss_mib": idle / 2**20,
        "peak_rss_mib": peak / 2**20,
        "peak_over_idle_mib": (peak - idle) / 2**20,
        "budget_mib": args.budget_mib or None,
        "peak_over_idle_per_budget": (peak - idle) / budget if budget else None,
        "unbounded_mib": args.burst * len(prompt) / 2**20,
    }


def _utf8_chunks(raw: bytes, size: int = 65536) -> None:
    """The reader's UTF-8 check: an incremental decode, chunk by chunk."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for at in range(0, len(raw), size):
        decoder.decode(raw[at : at + size])
    decoder.decode(b"", final=True)


def _segmented(raw: bytes, chunk: int = 65536) -> tuple[list[float], float]:
    """The reader's segmented path: each 64 KiB chunk's check, then the final split (s)."""
    from gateway.split_body import Segmenter, split_segmented

    buf = bytearray(raw)
    seg = Segmenter(buf)
    feeds = []
    for end in range(chunk, len(buf) + chunk, chunk):
        t0 = time.perf_counter()
        seg.feed(min(end, len(buf)))
        feeds.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    split_segmented(buf, seg)
    return feeds, time.perf_counter() - t0


def stages(sizes_mb: list[float], repeat: int = 5) -> list[dict[str, Any]]:
    """In-process cost of each stage a large body goes through, µs per MB
    (best of ``repeat``): the whole-decode path (translation's, and every
    body's before issue 26), the split path and the segmented reader (same
    dialect); and the longest stretch of each path on the loop, ms."""
    from gateway.dialects.openai import parse_chat_request
    from gateway.dialects.translate_request import anthropic_from_openai
    from gateway.split_body import split

    def best(fn: Any, *args: Any) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        return min(times)

    rows = []
    for mb in sizes_mb:
        raw = agent_prompt(mb)
        whole = orjson.loads(raw)
        parted = split(raw)
        per_mb = 1e6 / (len(raw) / 1e6)
        row = {
            "prompt_mb": mb,
            "orjson_loads": best(orjson.loads, raw),
            "pydantic_validate": best(parse_chat_request, whole),
            "translate_to_messages": best(anthropic_from_openai, whole),
            "orjson_dumps": best(orjson.dumps, {**whole, "model": "up"}),
            "msgspec_split": best(split, raw),
            "validate_small_fields": best(parse_chat_request, parted),
            "encode_pieces": best(parted.encode, {**parted, "model": "up"}),
            "utf8_check_per_chunk": best(_utf8_chunks, raw),
        }
        out = {k: (v if k == "prompt_mb" else round(v * per_mb)) for k, v in row.items()}
        feeds, final = _segmented(raw)
        out["segment_feeds"] = round(sum(feeds) * per_mb)
        out["longest_stretch_ms_before"] = round(
            (row["orjson_loads"] + row["pydantic_validate"]) * 1000, 2
        )
        out["longest_stretch_ms_split"] = round(row["msgspec_split"] * 1000, 2)
        out["longest_stretch_ms_segmented"] = round(max(*feeds, final) * 1000, 2)
        rows.append(out)
    return rows
