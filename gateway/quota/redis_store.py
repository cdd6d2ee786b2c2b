"""Quota counters in Redis: shared by every worker process and replica,
updated atomically by Lua scripts, budgets kept across gateway restarts.

Keys (``{name}`` is a Redis Cluster hash tag, so one key's counters live on
one shard and a script may touch them all)::

    sluice:q:{name}:r:<minute>    requests this minute       (expires after 120 s)
    sluice:q:{name}:t:<minute>    tokens this minute         (expires after 120 s)
    sluice:q:{name}:b:<period>    tokens this day / month    (expires a day after the period)
    sluice:q:{name}:e:<period>    of those, estimated ones   (written only when some are)
    sluice:q:{name}:leases        sorted set: lease id -> expiry (epoch ms)
    sluice:q:{name}:u:<period>    micro-dollars this day / month (written only when some are)
    sluice:q:{name}:ue:<period>   of those, priced from estimated tokens

The clock is the gateway's (``time.time()``): replicas are assumed to agree
to within a second (NTP), as the fixed windows are a minute long.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from ..redisconn import REDIS_ERRORS, PoolExhausted
from .store import Decision, Limits, StoreBusy, StoreUnavailable, Usage, Verdict, Windows

_ADMIT = """
local now = tonumber(ARGV[5])
local r, t, b, c = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local open = redis.call('ZCARD', KEYS[4])
local rpm = tonumber(redis.call('GET', KEYS[1]) or '0')
local tpm = tonumber(redis.call('GET', KEYS[2]) or '0')
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local u = tonumber(ARGV[8])
local usd = tonumber(redis.call('GET', KEYS[5]) or '0')
local verdict = 'ok'
if b >= 0 and used >= b then verdict = 'budget'
elseif u >= 0 and usd >= u then verdict = 'usd_budget'
elseif r >= 0 and rpm >= r then verdict = 'requests'
elseif t >= 0 and tpm >= t then verdict = 'tokens'
elseif c >= 0 and open >= c then verdict = 'concurrency'
end
if verdict == 'ok' then
  rpm = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 120)
  if ARGV[6] ~= '' then
    redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
    redis.call('PEXPIRE', KEYS[4], 2 * (tonumber(ARGV[7]) - now))
    open = open + 1
  end
end
return {verdict, rpm, tpm, used, open, usd}
"""

_SETTLE = """
local tokens = tonumber(ARGV[1])
local tpm = redis.call('INCRBY', KEYS[1], tokens)
redis.call('EXPIRE', KEYS[1], 120)
local used = redis.call('INCRBY', KEYS[2], tokens)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[4], ARGV[2]) end
if tonumber(ARGV[5]) > 0 then
  redis.call('INCRBY', KEYS[5], tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]))
end
if tonumber(ARGV[6]) > 0 then
  redis.call('INCRBY', KEYS[6], tonumber(ARGV[6]))
  redis.call('EXPIRE', KEYS[6], tonumber(ARGV[3]))
end
if tonumber(ARGV[7]) > 0 then
  redis.call('INCRBY', KEYS[7], tonumber(ARGV[7]))
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[3]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]))
local open = redis.call('ZCARD', KEYS[4])
local rpm = tonumber(redis.call('GET', KEYS[3]) or '0')
local usd = tonumber(redis.call('GET', KEYS[6]) or '0')
return {rpm, tpm, used, open, usd}
"""


def _keys(key: str, w: Windows) -> tuple[str, str, str, str]:
    base = f"sluice:q:{{{key}}}"
    return f"{base}:r:{w.minute}", f"{base}:t:{w.minute}", f"{base}:b:{w.period}", f"{base}:leases"


def _estimated_key(key: str, w: Windows) -> str:
    return f"sluice:q:{{{key}}}:e:{w.period}"


def _usd_keys(key: str, w: Windows) -> tuple[str, str]:
    """The period's micro-dollars, and the part priced from estimated tokens."""
    base = f"sluice:q:{{{key}}}"
    return f"{base}:u:{w.period}", f"{base}:ue:{w.period}"


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class RedisQuotaStore:
    """:class:`~gateway.quota.store.QuotaStore` on Redis (see the module docstring).
    Raises :class:`~gateway.quota.store.StoreUnavailable` when Redis does not
    answer, :class:`~gateway.quota.store.StoreBusy` when no pooled connection
    came free in time."""

    def __init__(self, client: aioredis.Redis, *, owns_client: bool = False) -> None:
        self._redis = client
        self._owns_client = owns_client
        """Close the client with the store (else its owner, the app, does)."""
        # Script objects run EVALSHA and fall back to EVAL on NOSCRIPT (a
        # restarted Redis has forgotten them).
        self._admit_lua = client.register_script(_ADMIT)
        self._settle_lua = client.register_script(_SETTLE)

    async def _do_admit(
        self, key: str, limits: Limits, w: Windows, lease: str | None, lease_expiry_ms: int
    ) -> Decision:
        args = (
            limits.requests_per_minute, limits.tokens_per_minute, limits.token_budget,
            limits.max_concurrent, w.now_ms, lease or "", lease_expiry_ms, limits.usd_budget,
        )  # fmt: skip
        keys = (*_keys(key, w), _usd_keys(key, w)[0])
        out = await self._admit_lua(keys=keys, args=args)
        verdict = Verdict(out[0].decode() if isinstance(out[0], bytes) else out[0])
        usage = Usage(
            _int(out[1]), _int(out[2]), _int(out[3]), _int(out[4]), period_usd=_int(out[5])
        )
        return Decision(verdict, usage)

    async def _do_settle(
        self,
        key: str,
        w: Windows,
        lease: str | None,
        tokens: int,
        estimated: int,
        usd: int,
        estimated_usd: int,
    ) -> Usage:
        r, t, b, leases = _keys(key, w)
        out = await self._settle_lua(
            keys=(t, b, r, leases, _estimated_key(key, w), *_usd_keys(key, w)),
            args=(tokens, lease or "", w.budget_ttl_s, w.now_ms, estimated, usd, estimated_usd),
        )
        return Usage(
            _int(out[0]), _int(out[1]), _int(out[2]), _int(out[3]), period_usd=_int(out[4])
        )

    async def _do_renew(self, leases: list[tuple[str, str]], expiry_ms: int) -> None:
        if not leases:
            return
        # The set itself expires (so an abandoned one goes away): push that too.
        keep_ms = max(1000, 2 * (expiry_ms - int(time.time() * 1000)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, lease in leases:
                pipe.zadd(f"sluice:q:{{{key}}}:leases", {lease: expiry_ms}, xx=True)
            for key in {key for key, _ in leases}:
                pipe.pexpire(f"sluice:q:{{{key}}}:leases", keep_ms)
            await pipe.execute()

    async def _do_usage(self, key: str, w: Windows) -> Usage:
        r, t, b, leases = _keys(key, w)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(r)
            pipe.get(t)
            pipe.get(b)
            pipe.zcount(leases, w.now_ms + 1, "+inf")
            pipe.get(_estimated_key(key, w))
            for usd_key in _usd_keys(key, w):
                pipe.get(usd_key)
            out = await pipe.execute()
        return Usage(*(_int(value) for value in out))

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    # The protocol's methods: Redis's failures become StoreUnavailable.

    async def admit(
        self, key: str, limits: Limits, w: Windows, lease: str | None, lease_expiry_ms: int
    ) -> Decision:
        try:
            return await self._do_admit(key, limits, w, lease, lease_expiry_ms)
        except PoolExhausted as err:
            raise StoreBusy(f"redis pool: {err}") from err
        except REDIS_ERRORS as err:
            raise StoreUnavailable(f"redis: {type(err).__name__}: {err}") from err

    async def settle(
        self,
        key: str,
        w: Windows,
        lease: str | None,
        tokens: int,
        estimated: int = 0,
        usd: int = 0,
        estimated_usd: int = 0,
    ) -> Usage:
        try:
            return await self._do_settle(key, w, lease, tokens, estimated, usd, estimated_usd)
        except PoolExhausted as err:
            raise StoreBusy(f"redis pool: {err}") from err
        except REDIS_ERRORS as err:
            raise StoreUnavailable(f"redis: {type(err).__name__}: {err}") from err

    async def renew(self, leases: list[tuple[str, str]], expiry_ms: int) -> None:
        try:
            await self._do_renew(leases, expiry_ms)
        except PoolExhausted as err:
            raise StoreBusy(f"redis pool: {err}") from err
        except REDIS_ERRORS as err:
            raise StoreUnavailable(f"redis: {type(err).__name__}: {err}") from err

    async def usage(self, key: str, w: Windows) -> Usage:
        try:
            return await self._do_usage(key, w)
        except PoolExhausted as err:
            raise StoreBusy(f"redis pool: {err}") from err
        except REDIS_ERRORS as err:
            raise StoreUnavailable(f"redis: {type(err).__name__}: {err}") from err
