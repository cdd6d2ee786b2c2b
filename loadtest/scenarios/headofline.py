"""``python -m loadtest headofline`` (in ``make bench``): large request bodies
against the streams already running, Sluice against the floor relay.

Issue 26, AIGatewayBench's head-of-line scenario, both relays in the same run.

Processes: an upstream of this module's own (``--serve-upstream``: paced
Chat Completions streams for small requests; for a body over 256 KiB, read
whole and not parsed, a one-event stream with usage), Sluice on it
(``max_body_bytes`` 64 MiB) and the floor relay (:mod:`loadtest.relays.floor`,
its aiohttp body limit raised to 64 MiB, ``--serve-floor``).

For each prompt size (none, then 1, 8 and 32 MB of agent-like JSON: many
turns of code and prose), through the floor and through Sluice in turn:
``--streams`` paced streams (one event every ``--itl-ms``) run for
``--phase-s`` while one client sends large prompts one after another. The
figure is the p99 gap between consecutive events of the small streams; the
*added* gap is that minus the same relay's p99 with no large prompt. Then a
burst: ``--burst`` clients each send a 32 MB prompt at once to Sluice (its
``max_body_bytes_in_flight`` is ``--budget-mib``); Sluice's peak RSS
(``VmHWM``, reset before the burst) against its idle RSS and the budget,
and how many were served or refused (503).

Targets (reported, never asserted): a 32 MB prompt adds < 10 ms to Sluice's
p99 gap, a 1 MB prompt < 2 ms; peak RSS over idle within ~3x the budget
(a body is held as read, plus the copy sent upstream).

Writes ``headofline.json`` and ``headofline.md`` under ``--out`` (default
``loadtest/results/headofline-<timestamp>/``). ``--gateway-src DIR`` runs
another build's ``gateway`` package (a "before" figure; ``--budget-mib 0``
for a build without the budget)::

    mkdir /tmp/before && git archive <rev> gateway | tar -x -C /tmp/before
    python -m loadtest headofline --gateway-src /tmp/before --budget-mib 0
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import psutil  # type: ignore[import-untyped]
from aiohttp import web

from loadtest import cli, procs
from loadtest.client.sampler import cpu_seconds
from loadtest.measure.phase import say
from loadtest.report.common import Check, checks_table, run_meta, verdict
from loadtest.report.stats import percentile

LARGE: Final = 256 << 10
BODY_LIMIT: Final = 64 << 20
CHAT: Final = "/v1/chat/completions"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest headofline",
        description=__doc__.split("\n")[0].replace("``", ""),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--streams", type=int, default=16, help="paced small streams")
    a("--itl-ms", type=float, default=50.0, help="gap between a small stream's events")
    a("--events", type=int, default=40, help="events per small stream (then a new one)")
    a("--sizes-mb", type=float, nargs="+", default=[1, 8, 32], help="large prompt sizes")
    a("--phase-s", type=float, default=6.0, help="seconds per (relay, size) phase")
    a("--burst", type=int, default=12, help="32 MB prompts sent at once in the RSS burst")
    a("--budget-mib", type=int, default=128, help="Sluice's max_body_bytes_in_flight (0: unset)")
    a("--gateway-src", type=Path, default=None, help="another build's gateway package")
    a("--out", type=Path, default=None, help="results directory")
    a("--stages", action="store_true", help="only the in-process cost per stage, µs/MB")
    a(
        "--serve-upstream",
        type=int,
        default=None,
        metavar="PORT",
        help="internal: serve this module's upstream on PORT",
    )
    a(
        "--serve-floor",
        nargs=2,
        default=None,
        metavar=("PORT", "UPSTREAM"),
        help="internal: serve the floor relay (64 MiB bodies) on PORT in front of UPSTREAM",
    )
    cli.add_quick(p, streams=4, sizes_mb=[1.0], phase_s=1.5, burst=2)
    return p


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


# -- the run -------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Path:
    out = cli.results_dir(args.out, "headofline")
    up_port, floor_port = procs.free_port(), procs.free_port()
    upstream = procs.spawn(
        "headofline_upstream",
        ["-m", "loadtest.scenarios.headofline", "--serve-upstream", str(up_port),
         "--events", str(args.events), "--itl-ms", str(args.itl_ms)],
        up_port, out,
    )  # fmt: skip
    up_url = f"http://{procs.HOST}:{up_port}"
    floor = procs.spawn(
        "headofline_floor",
        ["-m", "loadtest.scenarios.headofline", "--serve-floor", str(floor_port), up_url],
        floor_port, out,
    )  # fmt: skip
    extra = f"max_body_bytes = {BODY_LIMIT}\n"
    if args.budget_mib:
        extra += f"max_body_bytes_in_flight = {args.budget_mib << 20}\n"
    gw = procs.start_gateway(out, up_port, src=args.gateway_src, server_extra=extra)
    result: dict[str, Any] = {
        "meta": run_meta(args),
        "phases": [],
    }
    try:
        for m in (upstream, floor, gw):
            await procs.wait_ready(m, "/healthz", timeout_s=60)
        relays = {"floor": floor.url, "sluice": gw.url}
        pids = {"floor": floor.pid, "sluice": gw.pid}
        for mb in [0.0, *args.sizes_mb]:
            prompt = agent_prompt(mb) if mb else None
            for name, base in relays.items():
                say(f"headofline: {name}, {mb:g} MB prompts, {args.phase_s:g}s")
                proc = psutil.Process(pids[name])
                cpu0 = cpu_seconds(proc)
                ph = await run_phase(base, prompt, args)
                cpu_s = cpu_seconds(proc) - cpu0
                result["phases"].append({
                    "relay": name, "prompt_mb": mb,
                    "prompt_bytes": len(prompt) if prompt else 0,
                    "gap_p99_ms": percentile(ph.gaps, 99), "gap_p50_ms": percentile(ph.gaps, 50),
                    "gap_max_ms": max(ph.gaps) * 1000 if ph.gaps else None,
                    "events": len(ph.gaps), "prompts": ph.prompts,
                    "prompt_errors": ph.prompt_errors, "stream_errors": ph.stream_errors,
                    "relay_cpu_s": cpu_s,
                })  # fmt: skip
        say(f"headofline: burst of {args.burst} x 32 MB prompts at Sluice")
        result["burst"] = await burst(gw.url, gw.pid, args)
    finally:
        for m in (gw, floor, upstream):
            procs.stop(m)
    _verdicts(result)
    (out / "headofline.json").write_text(json.dumps(result, indent=2))
    md = out / "headofline.md"
    md.write_text(report(result))
    print(report(result), flush=True)
    return md


TARGETS_MS: Final = {1.0: 2.0, 32.0: 10.0}


def _verdicts(result: dict[str, Any]) -> None:
    """Each phase's added p99 gap (over the same relay's with no prompt) and
    CPU per prompt MB; for Sluice's phases with a target, a
    :class:`~loadtest.report.common.Check` (``check``, and its ``verdict``)."""
    base = {p["relay"]: p["gap_p99_ms"] for p in result["phases"] if p["prompt_mb"] == 0}
    idle = {p["relay"]: p for p in result["phases"] if p["prompt_mb"] == 0}
    for p in result["phases"]:
        if p["prompts"] and p["relay"] in idle:
            extra = p["relay_cpu_s"] - idle[p["relay"]]["relay_cpu_s"]
            p["cpu_ms_per_mb"] = extra * 1000 / (p["prompts"] * p["prompt_bytes"] / 1e6)
        if p["prompt_mb"] and p["gap_p99_ms"] is not None and base.get(p["relay"]) is not None:
            p["added_p99_ms"] = p["gap_p99_ms"] - base[p["relay"]]
    floor = {p["prompt_mb"]: p for p in result["phases"] if p["relay"] == "floor"}
    for p in result["phases"]:
        target = TARGETS_MS.get(p["prompt_mb"])
        if p["relay"] == "sluice" and target is not None:
            p["target_ms"] = target
            check = _check(p, idle.get("sluice"), floor.get(p["prompt_mb"]), target)
            p["check"], p["verdict"] = check.as_json(), check.verdict()


def _check(
    p: dict[str, Any], idle: dict[str, Any] | None, floor: dict[str, Any] | None, target: float
) -> Check:
    """Sluice's added p99 gap at one prompt size against ``target`` ms. A prompt
    that failed stressed nothing, and a small stream that failed measured
    nothing: either counts as failed (never ``met``); so does a phase with no
    prompt served. A miss the floor relay shares (its own added gap at the same
    size over the target too) is the machine's."""
    failed = _failed(p) + (_failed(idle) if idle is not None else 0)
    added = p.get("added_p99_ms")
    goal = f"< {target:g} ms added p99 gap"
    served = f"{p['prompts']} prompts served"
    if added is None:
        return Check(_TARGET.format(mb=p["prompt_mb"]), goal, "n/a", False, "no figure", failed)
    ok = added < target and p["prompts"] > 0
    why = f"{added:.1f} ms {'within' if added < target else 'over'} {target:g} ms, {served}"
    floor_added = None if floor is None else floor.get("added_p99_ms")
    if not ok and floor_added is not None:
        whose = "the machine's miss" if floor_added >= target else "Sluice's miss"
        verb = "missed too" if floor_added >= target else "met it"
        why += f"; the floor {verb} ({floor_added:.1f} ms added): {whose}"
    measured = f"{added:.1f} ms ({served})"
    return Check(_TARGET.format(mb=p["prompt_mb"]), goal, measured, ok, why, failed)


_TARGET: Final = "Sluice: small streams' added p99 gap, {mb:g} MB prompts"


def _failed(phase: dict[str, Any]) -> int:
    """Requests of a phase that did not complete: prompts and small streams."""
    return sum(phase["prompt_errors"].values()) + phase["stream_errors"]


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Head-of-line: large prompts vs the streams already running",
        "",
        "| prompt | relay | p99 gap ms | added ms | target | verdict | prompts sent "
        "| relay CPU ms per prompt MB | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        short = verdict(p["check"]["met"]) if "check" in p else ""  # why: the targets below
        errors = dict(p["prompt_errors"])
        if p["stream_errors"]:
            errors["streams"] = p["stream_errors"]
        lines.append(
            f"| {p['prompt_mb']:g} MB | {p['relay']} | {_f(p['gap_p99_ms'])} | "
            f"{_f(p.get('added_p99_ms'))} | {_f(p.get('target_ms'), '< ')} | "
            f"{short} | {p['prompts']} | {_f(p.get('cpu_ms_per_mb'))} "
            f"| {errors or ''} |"
        )
    checks = [Check.from_json(p["check"]) for p in result["phases"] if "check" in p]
    if checks:
        lines += ["", *checks_table(checks)]
    b = result.get("burst")
    if b:
        lines += [
            "",
            f"Burst: {b['prompts']} x {b['prompt_bytes'] / 1e6:.0f} MB prompts at once to Sluice "
            f"(budget {b['budget_mib']} MiB): statuses {b['statuses']}, idle RSS "
            f"{b['idle_rss_mib']:.0f} MiB, peak {b['peak_rss_mib']:.0f} MiB "
            f"(+{b['peak_over_idle_mib']:.0f} MiB; all bodies at once would be "
            f"{b['unbounded_mib']:.0f} MiB), {b['seconds']:.1f} s.",
        ]
    return "\n".join(lines) + "\n"


def _f(v: float | None, prefix: str = "") -> str:
    return "" if v is None else f"{prefix}{v:.1f}"


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


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve_upstream is not None:
        web.run_app(upstream_app(args.events, args.itl_ms / 1000), host=procs.HOST,
                    port=args.serve_upstream, access_log=None, print=None)  # fmt: skip
        return
    if args.serve_floor is not None:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return
    if args.stages:
        for row in stages(args.sizes_mb):
            print(json.dumps(row), flush=True)
        return
    procs.raise_nofile(4096)
    path = asyncio.run(run(args))
    say(f"headofline report: {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
