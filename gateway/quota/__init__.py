"""Per-key quotas: requests and tokens per minute, concurrent requests, token
budgets per calendar day or month.

- :mod:`.store`: the :class:`~.store.QuotaStore` protocol and its values;
- :mod:`.memory`: counters in this process;
- :mod:`.redis_store`: counters in Redis, shared by every process, atomic
  (Lua scripts);
- :mod:`.limiter`: what a request goes through: admit, charge, release, and
  the rate-limit headers of both dialects.
"""
