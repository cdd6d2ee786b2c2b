"""``python -m loadtest hotpath`` (first part of ``make bench``): Sluice's hot
path against the floor relay, in one run, on one machine.

One process tree: the mock upstream (:mod:`loadtest.mock.upstream`), the
Sluice gateway (``python -m gateway``, OpenAI-compatible provider on the mock,
metrics on, log level ``info``, ``max_streams`` raised so admission does not
cap, default settings otherwise) and the floor
relay (:mod:`loadtest.relays.floor`), all fed by the same load client
(:mod:`loadtest.client.driver`). For each repetition, each scenario runs straight at
the mock (``direct``, the reference for added TTFT) and then through floor and
Sluice, their order alternating between repetitions so drift on a shared
machine hits both. Each figure is the median over repetitions, with its
spread (min-max). Once the relays run, the load generator (this process)
and the mock drop to ``--harness-nice`` (10) so that on a 2-core machine a
runnable relay gets a core before them; each phase reports how long the
relay still waited for one (``/proc/<pid>/schedstat``).

Scenarios (default sizes; ``--quick`` shrinks them to seconds):

- ``paced200``: 200 concurrent streams (closed loop), each 100 events 20 ms
  apart after a 20 ms TTFT (about 10,000 events/s offered), for ``--phase-s``;
  plus ``--disconnects`` clients that leave mid-stream (after 5-50 events).
  Figures: relay CPU per 1,000 events, relay CPU utilisation, events/s,
  added TTFT p50 / p99 over direct, client disconnect -> upstream closed
  (the mock's record of the close) p50 / p99.
- ``paced500``: the same with 500 streams (25,000 events/s offered): where
  saturation starts (CPU near one core, events/s short of direct's).
- ``firehose``: one stream of 400,000 unpaced events: relayed events per relay
  CPU-second.
- ``ttft_c1``: added TTFT at concurrency 1 (p50, p99), ``--c1-requests``
  two-event streams.

Targets (reported, never asserted): paced200 CPU per 1,000 events <= 1.3x the
floor's; paced200 added TTFT p99 <= 5 ms; paced200 disconnect -> upstream
closed p99 <= 10 ms; firehose events per CPU-second >= 0.7x the floor's;
ttft_c1 added TTFT p50 <= 0.5 ms; paced500 is reported only.

Writes ``hotpath.json``, ``hotpath.md`` and PNG plots under
``loadtest/results/hotpath-<timestamp>/`` and prints the table. The default
run takes about 4-5 minutes on 2 cores (firehose is the longest part: 400,000
events at whatever rate the relay reaches); the mock, the floor relay and the
load generator always come from this checkout. ``--gateway-src DIR`` runs the
``gateway`` package found in DIR instead, for a "before" figure::

    mkdir /tmp/before && git archive <rev> gateway | tar -x -C /tmp/before
    python -m loadtest hotpath --gateway-src /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from loadtest import cli, procs
from loadtest.client.driver import LoadSpec
from loadtest.client.profiles import Profile, Target
from loadtest.measure.hotpath import Load, PhaseResult, measure
from loadtest.measure.phase import say
from loadtest.mock.scenario import MockScenario
from loadtest.report.common import run_meta
from loadtest.report.hotpath import build_rows, render_table, saturation, write_hotpath
from loadtest.report.hotpath_plots import make_hotpath_plots

SCENARIOS: Final = ("paced200", "paced500", "firehose", "ttft_c1")
RELAYS: Final = ("floor", "sluice")
NORMAL: Final = (Profile("normal", "normal", 1.0),)
WARMUP: Final = MockScenario(ttft_ms=1, itl_ms=1, tokens=20)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario's load. ``duration_s`` is how long new streams start
    (running streams finish after it); ``max_requests`` bounds requests."""

    name: str
    streams: int
    mock: MockScenario
    duration_s: float
    max_requests: int | None = None
    disconnects: int = 0
    direct: bool = True
    ramp_s: float = 0.0

    @property
    def offered_events_per_s(self) -> float:
        """Events/s the streams would deliver at their pace (0: unpaced)."""
        if self.mock.itl_ms <= 0:
            return 0.0
        return self.streams * 1000.0 / self.mock.itl_ms

    def describe(self) -> str:
        m = self.mock
        pace = f"{m.itl_ms:g} ms apart" if m.itl_ms else "unpaced"
        n = f"{self.max_requests} requests" if self.max_requests else f"{self.duration_s:g} s"
        dc = f", {self.disconnects} mid-stream disconnects" if self.disconnects else ""
        return (
            f"{self.streams} concurrent streams of {m.tokens:,} events {pace} after a "
            f"{m.ttft_ms:g} ms TTFT, for {n}{dc}"
        )

    def steady(self) -> tuple[float, float] | None:
        """The steady window (seconds into the phase): after the ramp and the first
        TTFT, until new streams stop starting; ``None`` for a single stream."""
        if self.streams <= 1:
            return None
        return (self.ramp_s + self.mock.ttft_ms / 1000.0, self.duration_s)

    def loads(self) -> list[Load]:
        main = LoadSpec(
            NORMAL,
            self.mock,
            concurrency=self.streams,
            duration_s=self.duration_s,
            max_requests=self.max_requests,
            ramp_s=self.ramp_s,
        )
        out = [Load(self.name, main)]
        if self.disconnects:
            hi = max(2, self.mock.tokens // 2)
            leave = Profile(
                "disconnect_mid", "disconnect_mid", 1.0, disconnect_after_tokens=(5, hi)
            )
            # Leave in the steady state, after the ramp, spread over a few workers.
            spec = LoadSpec(
                (leave,),
                self.mock,
                concurrency=max(1, self.disconnects // 5),
                duration_s=max(self.duration_s - self.ramp_s, 0.5),
                max_requests=self.disconnects,
                ramp_s=0.5,
            )
            out.append(Load(f"{self.name}-dc", spec, delay_s=self.ramp_s))
        return out


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios to run, sized by ``args`` (``--quick`` shrinks everything)."""
    q = args.quick
    paced = MockScenario(ttft_ms=20, itl_ms=10 if q else 20, tokens=20 if q else 100)
    phase = args.phase_s
    dc = args.disconnects
    ramp = min(1.0, phase / 3)
    all_ = {
        "paced200": Scenario("paced200", 20 if q else 200, paced, phase, None, dc, True, ramp),
        "paced500": Scenario("paced500", 50 if q else 500, paced, phase, None, dc, True, ramp),
        "firehose": Scenario(
            "firehose",
            1,
            MockScenario(ttft_ms=0, itl_ms=0, tokens=args.firehose_events),
            duration_s=300.0,
            max_requests=1,
            direct=False,
        ),
        "ttft_c1": Scenario(
            "ttft_c1",
            1,
            MockScenario(ttft_ms=2, itl_ms=1, tokens=2),
            duration_s=120.0,
            max_requests=args.c1_requests,
        ),
    }
    return [all_[name] for name in dict.fromkeys(args.only)]  # each once, in the order given


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("loadtest hotpath", __doc__)
    p.add_argument("--reps", type=int, default=3, help="repetitions of every scenario")
    p.add_argument(
        "--phase-s",
        type=float,
        default=5.0,
        help="seconds new streams start in each paced phase (streams then finish, +2 s)",
    )
    p.add_argument(
        "--disconnects",
        type=int,
        default=50,
        help="mid-stream client disconnects per paced phase (cancel latency)",
    )
    p.add_argument(
        "--firehose-events", type=int, default=400_000, help="events in the firehose stream"
    )
    p.add_argument(
        "--c1-requests", type=int, default=300, help="requests in the concurrency-1 TTFT phase"
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these scenarios (of {', '.join(SCENARIOS)})",
    )
    cli.add_gateway(p, buffer=False)
    p.add_argument(
        "--gateway-log-level",
        default="info",
        help="the gateway's --log-level (info, its default, logs one stream_end line per stream)",
    )
    p.add_argument(
        "--floor-uvloop",
        action="store_true",
        help="run the floor relay on uvloop (off: asyncio's loop, the floor as specified)",
    )
    p.add_argument(
        "--gateway-asyncio",
        action="store_true",
        help="run the gateway on asyncio's own loop ([server] uvloop = false) instead of uvloop",
    )
    p.add_argument(
        "--harness-nice",
        type=int,
        default=procs.HARNESS_NICE,
        help="CPU priority (nice) of the load generator and the mock once the relays run, "
        "so a runnable relay gets a core first; 0: all equal (the relays stay at their own)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="seconds-long run (smoke test): 1 rep, 20/50 streams, 0.6 s phases, small firehose",
    )
    cli.add_out(p, "hotpath")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.reps, args.phase_s, args.disconnects = 1, 0.6, 5
        args.firehose_events, args.c1_requests = 5_000, 30
    return args


def _order(rep: int) -> tuple[str, ...]:
    """Floor and Sluice swap places every repetition; direct goes first."""
    return ("direct", *(RELAYS if rep % 2 == 0 else RELAYS[::-1]))


async def _run_all(
    args: argparse.Namespace, scs: list[Scenario], ps: dict[str, procs.Managed]
) -> list[PhaseResult]:
    mock = ps["mock"]
    targets = {
        "direct": Target("direct", procs.HOST, mock.port, "mock"),
        "floor": Target("floor", procs.HOST, ps["floor"].port, "mock"),
        "sluice": Target("sluice", procs.HOST, ps["sluice"].port, procs.OPENAI_MODEL),
    }
    warm = Load("warmup", LoadSpec(NORMAL, WARMUP, concurrency=20, max_requests=100))
    for name, target in targets.items():
        # Unmeasured: imports, pools and caches of every process settle before rep 1.
        await measure("warmup", -1, target, [warm], mock, ps.get(name))
    out: list[PhaseResult] = []
    for rep in range(args.reps):
        for sc in scs:
            for name in _order(rep):
                if name == "direct" and not sc.direct:
                    continue
                say(f"rep {rep + 1}/{args.reps} {sc.name} {name}")
                res = await measure(
                    sc.name, rep, targets[name], sc.loads(), mock, ps.get(name), sc.steady()
                )
                cpu = (
                    ""
                    if name == "direct"
                    else f"relay CPU/1k events {_ms(res.cpu_per_1k_events_ms)}, "
                )
                say(
                    f"  {res.events:,} events in {res.wall_s:.1f}s, errors {res.errors}, "
                    f"{cpu}TTFT p99 {_ms(res.ttft_ms(99))}"
                )
                out.append(res)
                await asyncio.sleep(0.2)  # let closed connections settle
    return out


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


async def run(args: argparse.Namespace) -> Path:
    """Start the processes, run every scenario, write the report; returns hotpath.md."""
    t_start = time.monotonic()
    load_before = os.getloadavg()
    procs.raise_nofile(20000)
    out = cli.results_dir(args.out, "hotpath")
    scs = scenarios(args)
    ps: dict[str, procs.Managed] = {}
    own_priority: int | None = None
    try:
        ps["mock"] = procs.start_mock(out, extra=["--backlog", "8192"])
        await procs.wait_ready(ps["mock"], "/_mock/records")
        ps["floor"] = procs.start_floor(out, ps["mock"].url, uvloop=args.floor_uvloop)
        ps["sluice"] = procs.start_gateway(
            out,
            ps["mock"].port,
            log_level=args.gateway_log_level,
            src=args.gateway_src,
            server_extra="uvloop = false" if args.gateway_asyncio else "",
        )
        await procs.wait_ready(ps["floor"], "/healthz")
        await procs.wait_ready(ps["sluice"], "/healthz")
        # The relays keep the CPU priority they started with; the harness
        # (this process, the load generator, and the mock) yields to them.
        procs.deprioritise(ps["mock"].pid, args.harness_nice)
        own_priority = procs.deprioritise(0, args.harness_nice)
        phases = await _run_all(args, scs, ps)
    finally:
        if own_priority is not None:  # a caller in this process (cancel_trace) gets it back
            procs.restore_priority(0, own_priority)
        for m in reversed(ps.values()):
            procs.stop(m)
    elapsed = time.monotonic() - t_start
    result: dict[str, Any] = {
        "meta": run_meta(
            args,
            started=time.time() - elapsed,
            elapsed_s=elapsed,
            # Other work on the machine skews every figure; the 1-minute load average says how much.
            loadavg_1m_start_end=[load_before[0], os.getloadavg()[0]],
            gateway_src=str(args.gateway_src or procs.REPO_ROOT),
        ),
        "scenarios": {
            sc.name: {
                "streams": sc.streams,
                "description": sc.describe(),
                "mock": sc.mock.full_directive(),
                "duration_s": sc.duration_s,
                "max_requests": sc.max_requests,
                "disconnects": sc.disconnects,
                "offered_events_per_s": sc.offered_events_per_s,
            }
            for sc in scs
        },
        "rows": [r.as_dict() for r in build_rows(phases)],
        "saturation": saturation(phases, {sc.name: sc.offered_events_per_s for sc in scs}),
        "phases": [p.summary() for p in phases],
    }
    result["plots"] = make_hotpath_plots(phases, out)
    path = write_hotpath(result, out)
    print(render_table(result), flush=True)
    print(f"hotpath done in {elapsed:.0f} s", flush=True)
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = asyncio.run(run(args))
    print(f"hotpath report: {path}", flush=True)


if __name__ == "__main__":
    main()
