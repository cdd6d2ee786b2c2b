"""Where a client disconnect's time goes inside the gateway, measured.

Runs :mod:`loadtest.scenarios.hotpath`'s ``paced200`` scenario (one rep) against a
gateway with trace hooks (a ``sitecustomize`` on its ``PYTHONPATH``; the
gateway's code is unchanged) and splits "client disconnect -> upstream
closed" into the gateway's steps, per disconnect, in ms:

- ``lost->end``: aiohttp saw the client's socket close (the server
  protocol's ``connection_lost``, which cancels the handler) -> the stream
  core caught it (``Stream._end``): the cancelled task's wait for the loop;
- ``end->closed``: ``Stream._end`` (upstream closed first, then the outcome
  recorded);
- ``closed->fd``: the upstream response closed -> its socket's
  ``connection_lost`` (the transport closes the file descriptor one loop
  iteration later: this is when the upstream sees the FIN);
- ``lag``: event-loop lag sampled every 1 ms through the run.

The hotpath report of the same run (``--out``) has the end-to-end figure
(client disconnect -> the mock saw the close) and the floor's, for scale.

Usage: ``python -m loadtest cancel_trace [--out DIR] [--disconnects 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from loadtest import cli, procs
from loadtest.report.stats import pct
from loadtest.scenarios import hotpath

HOOKS = """
import asyncio, atexit, json, time
import aiohttp.client_proto as _cp
import aiohttp.web_protocol as _wp
import gateway.stream as _gs

_OUT = open({out!r}, "a", buffering=1)
_LOST = {{}}
_PROTO = {{}}
_LAGS = []

_lost = _wp.RequestHandler.connection_lost
def connection_lost(self, exc):
    task = self._task_handler
    if task is not None and not task.done():
        _LOST[task] = time.perf_counter()
    _lost(self, exc)
_wp.RequestHandler.connection_lost = connection_lost

_end = _gs.Stream._end
def _traced_end(self, reason, error, gone_at):
    t_end = time.perf_counter()
    t_lost = _LOST.pop(asyncio.current_task(), None)
    proto = None
    opened = self._opened
    if opened is not None:
        conn = getattr(getattr(opened.upstream, "_response", None), "_connection", None)
        proto = getattr(conn, "protocol", None)
    outcome = _end(self, reason, error, gone_at)
    if proto is not None and reason.value == "client_disconnected":
        _PROTO[proto] = (t_lost, gone_at, t_end, time.perf_counter())
    if len(_LAGS) == 0:
        asyncio.get_running_loop().call_later(0.001, _tick, time.perf_counter() + 0.001)
        _LAGS.append(0.0)
    return outcome
_gs.Stream._end = _traced_end

_plost = _cp.ResponseHandler.connection_lost
def proto_lost(self, exc):
    marks = _PROTO.pop(self, None)
    if marks is not None:
        t_lost, gone_at, t_end, t_closed = marks
        _OUT.write(json.dumps({{"lost": t_lost, "gone": gone_at, "end": t_end,
                               "closed": t_closed, "fd": time.perf_counter()}}) + "\\n")
    _plost(self, exc)
_cp.ResponseHandler.connection_lost = proto_lost

def _tick(due):
    now = time.perf_counter()
    _LAGS.append(now - due)
    if len(_LAGS) % 1000 == 0:
        _OUT.write(json.dumps({{"lags": _LAGS[-1000:]}}) + "\\n")
    asyncio.get_running_loop().call_later(0.001, _tick, now + 0.001)
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m loadtest cancel_trace`` command line."""
    p = cli.parser("loadtest cancel_trace", __doc__)
    p.add_argument(
        "--disconnects", type=int, default=50, help="mid-stream client disconnects in the phase"
    )
    p.add_argument("--phase-s", type=float, default=5.0, help="seconds new streams start")
    p.add_argument("--scenario", default="paced200", choices=hotpath.SCENARIOS[:2],
                   help="the hotpath scenario to trace")  # fmt: skip
    p.add_argument(
        "--quick", action="store_true", help="hotpath's --quick sizes: 20 paced streams, not 200"
    )
    cli.add_gateway(p, buffer=False)
    cli.add_out(p, "cancel-trace")
    return p


def _pct(values: list[float]) -> str:
    s = pct(values)
    if s is None:
        return "n/a"
    return f"p50 {s['p50']:6.2f}  p99 {s['p99']:6.2f}  max {s['max']:6.2f} ms  (n={s['n']:.0f})"


def summarize(trace: Path) -> str:
    """The per-step percentiles of a trace file (one JSON object a line)."""
    steps: dict[str, list[float]] = {"lost->end": [], "end->closed": [], "closed->fd": []}
    steps["lost->fd"] = []
    lags: list[float] = []
    for line in trace.read_text().splitlines():
        rec = json.loads(line)
        if "lags" in rec:
            lags.extend(rec["lags"])
            continue
        start = rec["lost"] if rec["lost"] is not None else rec["gone"]
        if start is not None:
            steps["lost->end"].append(rec["end"] - start)
            steps["lost->fd"].append(rec["fd"] - start)
        steps["end->closed"].append(rec["closed"] - rec["end"])
        steps["closed->fd"].append(rec["fd"] - rec["closed"])
    lines = [f"{name:12s} {_pct(values)}" for name, values in steps.items()]
    lines.append(f"{'loop lag':12s} {_pct(lags)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = cli.results_dir(args.out, "cancel-trace")
    trace = out / "cancel_trace.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        tree = args.gateway_src or procs.REPO_ROOT
        (src / "gateway").symlink_to(tree.resolve() / "gateway")
        (src / "sitecustomize.py").write_text(HOOKS.format(out=str(trace)))
        hp = hotpath.parse_args(
            ["--only", args.scenario, "--reps", "1", "--phase-s", str(args.phase_s),
             "--disconnects", str(args.disconnects), "--gateway-src", str(src),
             "--out", str(out), *(["--quick"] if args.quick else [])]
        )  # fmt: skip
        hp.phase_s, hp.disconnects = args.phase_s, args.disconnects
        report = asyncio.run(hotpath.run(hp))
    print(f"hotpath report: {report}")
    print(summarize(trace))


if __name__ == "__main__":
    main()
