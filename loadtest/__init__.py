"""Sluice load test: a mock upstream, a load generator, a benchmark suite.

Modules, one job each:

- :mod:`loadtest.scenario`: what a mock stream does (pace, length, fault),
  chosen per server, per model name, per request header or prompt directive.
- :mod:`loadtest.mock_frames`: OpenAI / Anthropic SSE frame encoders.
- :mod:`loadtest.mock_upstream`: the mock upstream server and its records.
- :mod:`loadtest.sse_client`: a raw-asyncio HTTP/1.1 SSE client that times
  every event on arrival.
- :mod:`loadtest.profiles`: client behaviours (normal, slow, stalled,
  disconnecting).
- :mod:`loadtest.driver`: closed-loop and open-loop (Poisson) load.
- :mod:`loadtest.sampler`: RSS, CPU and /metrics sampling of a process.
- :mod:`loadtest.stats`: percentiles (numpy) and direct-vs-gateway deltas.
- :mod:`loadtest.report` / :mod:`loadtest.plots`: JSON, Markdown, PNG.
- :mod:`loadtest.procs`: start and stop the mock, the gateway, the baseline.
- :mod:`loadtest.runner`: the default end-to-end scenario (``python -m loadtest``).
- :mod:`loadtest.bench`: the comparison suite (``python -m loadtest.bench``).
- :mod:`loadtest.baseline_relay`: a deliberately unbounded relay (no drain).
- :mod:`loadtest.backpressure`: stalled clients on the baseline and on Sluice at
  once; failed requests and streams held counted per relay, RSS sampled.
- :mod:`loadtest.floor_relay`: the minimal correct relay (write + drain per
  event), the floor the hot path is measured against.
- :mod:`loadtest.hotpath`: Sluice vs the floor relay (``python -m loadtest.hotpath``),
  with :mod:`loadtest.hotpath_measure`, :mod:`loadtest.hotpath_report` and
  :mod:`loadtest.hotpath_plots`.
- :mod:`loadtest.nginx`: nginx with ``deploy/nginx/sluice.conf`` on free ports.
- :mod:`loadtest.fleet`: Redis, the mock, N replicas and nginx on one machine
  (``python -m loadtest.fleet``, ``make fleet``).
- :mod:`loadtest.fleet_load`: events/s through a URL or through fleets of 1..N
  replicas (``python -m loadtest --target URL`` / ``--fleet 1,2,3``).
"""
