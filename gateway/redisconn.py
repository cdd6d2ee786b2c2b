"""One Redis connection setup for everything the gateway keeps in Redis
(per-key quotas and the stream store).

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

The pool holds at most ``[state] max_connections`` connections; a command
that finds them all in use *waits* for one (redis-py's
``BlockingConnectionPool``), at most ``pool_timeout_s``, and past that
raises :class:`PoolExhausted`: the process had too many commands in flight,
which says nothing about Redis's health. It is one of :data:`REDIS_ERRORS`
(a caller that does not tell them apart fails safe), and callers catch it
first to answer "busy" (``state_busy``), never "Redis is down".
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError

from .config_auth import StateSettings

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
"""Redis unreachable, timed out, or answered an error (or :class:`PoolExhausted`)."""


class PoolExhausted(MaxConnectionsError):
    """No connection of the pool came free within its ``timeout``
    (``[state] pool_timeout_s``): every one of ``max_connections`` is in use
    by this process. Redis itself may be perfectly healthy."""


_CONNECTING: ContextVar[bool] = ContextVar("sluice_redis_connecting", default=False)
"""Set once a pool wait is over and the connection is being (re)connected,
so a connect failure is told apart from the wait timing out."""


class BoundedPool(BlockingConnectionPool):
    """``BlockingConnectionPool`` whose wait, when it times out, raises
    :class:`PoolExhausted` (redis-py raises a plain ``ConnectionError``, the
    same class as "connection refused")."""

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        token = _CONNECTING.set(False)
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
        except RedisConnectionError as err:
            if _CONNECTING.get():
                raise  # the server, not the wait
            raise PoolExhausted(
                f"no free connection in the Redis pool within {self.timeout} s "
                f"({self.max_connections} in use by this process)"
            ) from err
        finally:
            _CONNECTING.reset(token)

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        _CONNECTING.set(True)
        await super().ensure_connection(connection)


def connect(state: StateSettings, *, client_name: str = "sluice") -> aioredis.Redis:
    """A client for ``state.redis_url`` (which must be set), on a
    :class:`BoundedPool` of ``max_connections`` waiting at most
    ``pool_timeout_s``. Connects lazily."""
    assert state.redis_url is not None
    pool = BoundedPool.from_url(
        state.redis_url,
        max_connections=state.max_connections,
        timeout=state.pool_timeout_s,
        socket_connect_timeout=state.connect_timeout_s,
        socket_timeout=state.timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
        client_name=client_name,
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)


def blocking_reads_client(client: aioredis.Redis, block_s: float) -> aioredis.Redis:
    """A second client for commands that block on the server (``XREAD
    BLOCK``), on a pool of its own with ``client``'s settings (its size and
    bounded wait included) and a socket timeout ``block_s`` longer, so a
    blocking read is not cut by the per-command timeout. Its owner closes it."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = block_s + (kwargs.get("socket_timeout") or 0)
    timeout = pool.timeout if isinstance(pool, BlockingConnectionPool) else None
    blocking = BoundedPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        timeout=timeout,
        **kwargs,
    )
    return aioredis.Redis.from_pool(blocking)
