"""One Redis connection setup for everything the gateway keeps in Redis
(per-key quotas today; a store of resumable streams later).

The app makes one client per process from ``[state]`` (``gateway.app``,
``cleanup_ctx``) and keeps it in :data:`gateway.state.REDIS`; a Redis-backed
store takes that client (its pool) and closes nothing. A store names its keys
under its own prefix (quotas: ``sluice:q:``) and handles
:data:`REDIS_ERRORS` itself: fail closed or open is its decision.

:func:`connect` builds a ``redis.asyncio.Redis`` whose every command is
bounded: ``connect_timeout_s`` to connect, ``timeout_s`` per command, and no
client-side retries (redis-py retries three times by default, which would
multiply a dead server's cost). The pool reconnects by itself on the next
command once the server is back. :data:`REDIS_ERRORS` are the exceptions
that mean "the state store did not answer"; callers decide to fail closed or
open.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config_auth import StateSettings

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
"""Redis unreachable, timed out, or answered an error."""


def connect(state: StateSettings, *, client_name: str = "sluice") -> aioredis.Redis:
    """A client for ``state.redis_url`` (which must be set). Connects lazily."""
    assert state.redis_url is not None
    return aioredis.Redis.from_url(
        state.redis_url,
        socket_connect_timeout=state.connect_timeout_s,
        socket_timeout=state.timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
        client_name=client_name,
        decode_responses=False,
    )
