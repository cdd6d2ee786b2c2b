"""Routing across a model's deployments (issue 24).

One module per concern, each a small type tested without a network:

- :mod:`.settings`   ``[models.routing]`` (pydantic, embedded in the config)
- :mod:`.ewma`       PeakEwma: the latency estimate (tower's ``peak_ewma``)
- :mod:`.health`     Health: failures in a window, cooldown, half-open trial
- :mod:`.strategies` least_busy, latency (p2c), weighted, affinity
- :mod:`.queue`      WaitQueue: bounded, timed FIFO wait for a free slot
- :mod:`.router`     ModelRouter: a model's deployments, their state, leases
- :mod:`.route`      Route: one request's attempts across deployments
  (the hook :func:`gateway.attempts.with_fallbacks` calls)
- :mod:`.build`      the routers of a configuration (``ROUTERS`` app key)

All state is per process: each replica of a fleet learns the same from its
own traffic (cooldowns, latency) and counts only its own streams.
"""
