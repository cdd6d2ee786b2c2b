"""Sluice load test: a mock upstream, a load generator, a benchmark suite.

One entry point, ``python -m loadtest <command> [options]`` (``__main__.py``;
``python -m loadtest help`` lists the commands, ``python -m loadtest`` alone
runs ``runner``). The commands are the modules of ``scenarios/`` (their shared
options and the results directory: ``cli.py``); the parts they share live in
six subpackages, in the order a run uses them (mock -> client -> measure ->
report, with procs starting the processes and relays the comparison relays)::

    python -m loadtest [runner]         end to end: mock, gateway, load, report
    python -m loadtest hotpath          Sluice vs the floor relay, same run
    python -m loadtest relay_cpu        what the metrics cost per event
    python -m loadtest bench            direct vs gateway at several loads
    python -m loadtest headofline       large prompts vs running streams, floor too
    python -m loadtest routing          routing across deployments (bench section)
    python -m loadtest otel_cost        what OpenTelemetry costs (bench section)
    python -m loadtest real_model       a real model (llama.cpp) behind Sluice
    python -m loadtest fleet            Redis, the mock, N replicas, nginx
    python -m loadtest auth_overhead    what keys, quotas and Redis cost
    python -m loadtest state_burst      a burst of limited requests on Redis quotas
    python -m loadtest setup_cost       gateway CPU per request, GC, loop lag
    python -m loadtest event_cost       us per event of the relay's Python steps
    python -m loadtest cancel_trace     where a disconnect's time goes, per step

    scenarios/ one module a command (``<command>.py``, ``main(argv)``);
              ``__init__`` lists them (COMMANDS); every one that measures
              has ``--quick`` (seconds, every figure; ``cli.add_quick``)
    mock/     scenario.py (what a stream does: pace, length, fault), frames.py
              (OpenAI / Anthropic SSE frames; ``sse_event``, the one event
              encoder, also the tests' fakes'), upstream.py (the server,
              ``python -m loadtest.mock.upstream``)
    client/   sse.py (a raw-asyncio SSE client timing every event), profiles.py
              (targets and client behaviours), driver.py (closed-loop and
              open-loop load), sampler.py (RSS, CPU: ``cpu_seconds``, the one
              CPU reading; /metrics of a process)
    relays/   floor.py (write + drain per event: the floor), baseline.py (no
              drain: unbounded), app.py (what both are built from)
    measure/  one measured phase per family: phase.py (end to end),
              hotpath.py, backpressure.py (stalled clients), fleet.py
              (events/s through a URL or fleets of 1..N replicas), routing.py
              (one run per routing strategy on three mock deployments),
              headofline.py (large prompts against running streams)
    report/   common.py (``Check``: the one verdict type of every report, with
              target, goal, measured, verdict, why and failed requests; machine
              info, the end-to-end report), stats.py (percentiles, deltas),
              bench.py, hotpath.py, routing.py, headofline.py, the ``*_plots.py``
              PNGs and plotstyle.py
              (what every plot shares: axes from zero, legends outside)
    procs/    start and stop the mock, the gateway, the relays
              (``__init__``), fleet.py (Redis, mock, N replicas, nginx),
              nginx.py, llama.py (``python -m loadtest.procs.llama``)

Results go to ``loadtest/results/<kind>-<time>/`` (JSON, Markdown, PNG).
"""
