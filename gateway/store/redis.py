"""The stream store in Redis: one Redis Stream per stream id, shared by every
process and replica (``[state] redis_url``).

Keys, under ``sluice:s:{id}``: the events as a Redis Stream with explicit ids
``0-{n+1}`` for event ``n`` (so ``starting_after=N`` reads after ``0-{N+1}``),
an ``end`` entry that closes it, and a hash ``...:m`` with the owner, status,
size (events, snapshot and context), event count and snapshot. Every change
is one Lua script (bound checks, ``XADD``\\s, counters, expiry) so concurrent
readers never see half of one, and the store-wide accounting (``sluice:s:held``,
``total``, ``done``, ``live``) holds ``[store] max_bytes`` across every
replica as the memory store does in one process: past it the oldest finished
streams are evicted, and with none left a new append fails as too large.
Running streams expire ``running_ttl_s`` after their last append (a producer
that died does not leave them forever); finished ones ``ttl_s`` after they end.
A cancel from any replica sets ``...:c`` and publishes the id on
``sluice:s:cancel``; the process producing the stream hears it (one
subscription per process) and stops the generation at once through
``on_cancel``, closing its upstream even while it waits for a token. A
message missed (Redis reconnecting) is caught by the lease renewal, which
also checks the flags, and by the producer's next append, which refuses to
add to a cancelled stream (:class:`~gateway.errors.StreamCancelled`).

A running stream's producer holds a lease, ``...:p``, set at create, renewed
for all of this process's running streams every third of
``producer_lease_s`` by one pipeline, and deleted when the stream ends. A
follower that sees no new event for a second checks it: a stream still
``in_progress`` whose lease lapsed lost its producer (the replica was
killed), and the follower ends with :class:`~gateway.errors.ProducerLost`
instead of waiting for the running TTL.

Redis errors become :class:`~gateway.errors.StoreUnavailable` (503): the
caller decides what a stream does without its store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
import structlog

from ..errors import (
    GatewayError,
    ProducerLost,
    StateBusy,
    StoreUnavailable,
    StreamCancelled,
    StreamGone,
)
from ..redisconn import REDIS_ERRORS, PoolExhausted, blocking_reads_client
from .base import (
    READ_BATCH,
    StoredEvents,
    StoredStatus,
    StoredStream,
    StreamTooLarge,
    too_large_context,
)

log = structlog.get_logger("gateway.store")

PREFIX = "sluice:s:"
CANCEL_CHANNEL = PREFIX + "cancel"
"""Pub/sub channel: stream ids whose cancel was requested."""
FOLLOW_BLOCK_MS = 1000
"""A follower re-checks that its stream still exists (and its producer lives)
this often. Its blocking reads go through a pool of their own whose socket
timeout is this plus the configured one (a blocking read on the shared
client would time out)."""

_ACCOUNTING = """
local PREFIX = 'sluice:s:'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function forget(id)
  local held = tonumber(redis.call('HGET', KEYS[5], id) or '0')
  if held ~= 0 then redis.call('DECRBY', KEYS[6], held) end
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
end
local function purge()
  for _, z in ipairs({KEYS[7], KEYS[8]}) do
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 64)) do
      forget(id)
    end
  end
end
local function room(need)
  local max = tonumber(ARGV[2])
  local total = tonumber(redis.call('GET', KEYS[6]) or '0')
  while total + need > max do
    local oldest = redis.call('ZRANGE', KEYS[7], 0, 0)
    if #oldest == 0 then return false end
    local base = PREFIX .. oldest[1]
    redis.call('DEL', base, base .. ':m', base .. ':c', base .. ':p')
    forget(oldest[1])
    total = tonumber(redis.call('GET', KEYS[6]) or '0')
  end
  return true
end
local function account(id, add, zset, expiry)
  if add ~= 0 then
    redis.call('HINCRBY', KEYS[5], id, add)
    redis.call('INCRBY', KEYS[6], add)
  end
  redis.call('ZADD', zset, expiry, id)
end
"""
"""Shared by every script: what each stream holds (``held``: id -> bytes, and
their ``total``), finished streams by expiry (``done``: evicted oldest first
when ``[store] max_bytes`` would be passed) and running ones (``live``), with
the entries of streams that expired purged as the scripts run. KEYS: the
stream's events, meta, cancel and lease keys, then held, total, done, live;
ARGV[1] the stream id, ARGV[2] ``max_bytes``."""

_CREATE = (
    _ACCOUNTING
    + """
purge()
local size = string.len(ARGV[4])
if not room(size) then return -2 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
forget(ARGV[1])
redis.call('HSET', KEYS[2], 'owner', ARGV[3], 'status', 'in_progress', 'size', size,
           'count', 0, 'context', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
account(ARGV[1], size, KEYS[8], now + tonumber(ARGV[5]))
return 1
"""
)

_APPEND = (
    _ACCOUNTING
    + """
local size = tonumber(redis.call('HGET', KEYS[2], 'size') or '-1')
if size < 0 then return -1 end
local add = tonumber(ARGV[3])
if ARGV[6] ~= '' then
  add = add + string.len(ARGV[6]) - redis.call('HSTRLEN', KEYS[2], 'snapshot')
end
if ARGV[4] == '0' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
  if size + add > tonumber(ARGV[5]) then return -2 end
  purge()
  if not room(add) then return -4 end
end
local n = tonumber(redis.call('HGET', KEYS[2], 'count'))
for i = 8, #ARGV do
  redis.call('XADD', KEYS[1], '0-' .. (n + i - 7), 'e', ARGV[i])
end
n = n + #ARGV - 7
redis.call('HSET', KEYS[2], 'count', n, 'size', size + add)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'snapshot', ARGV[6]) end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
account(ARGV[1], add, KEYS[8], now + tonumber(ARGV[7]))
return n
"""
)

_CLOSE = (
    _ACCOUNTING
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[3])
local grown = 0
if ARGV[4] ~= '' then
  grown = string.len(ARGV[4]) - redis.call('HSTRLEN', KEYS[2], 'snapshot')
  redis.call('HINCRBY', KEYS[2], 'size', grown)
  redis.call('HSET', KEYS[2], 'snapshot', ARGV[4])
end
redis.call('XADD', KEYS[1], '*', 'end', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[8], ARGV[1])
account(ARGV[1], grown, KEYS[7], now + tonumber(ARGV[5]))
return 1
"""
)

_DELETE = (
    _ACCOUNTING
    + """
local n = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
forget(ARGV[1])
return n
"""
)

HELD, TOTAL, DONE, LIVE = (PREFIX + name for name in ("held", "total", "done", "live"))
"""The store-wide accounting keys (see :data:`_ACCOUNTING`)."""


class RedisStreamStore:
    """See the module docstring; implements :class:`~gateway.store.base.StreamStore`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_s: float,
        stream_max_bytes: int,
        max_bytes: int = 268435456,
        running_ttl_s: float = 3600.0,
        producer_lease_s: float = 5.0,
        on_cancel: Callable[[str], object] | None = None,
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._running_ms = int(running_ttl_s * 1000)
        self._lease_ms = max(1, int(producer_lease_s * 1000))
        self._max = stream_max_bytes
        self._max_bytes = max_bytes
        self._create = client.register_script(_CREATE)
        self._append = client.register_script(_APPEND)
        self._close = client.register_script(_CLOSE)
        self._delete = client.register_script(_DELETE)
        self._producing: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._on_cancel = on_cancel
        self._blocking = blocking_reads_client(client, FOLLOW_BLOCK_MS / 1000)
        self._listener: asyncio.Task[None] | None = None

    @staticmethod
    def _keys(stream_id: str) -> tuple[str, str, str]:
        base = PREFIX + stream_id
        return base, base + ":m", base + ":c"

    @staticmethod
    def _lease_key(stream_id: str) -> str:
        return PREFIX + stream_id + ":p"

    def _script_keys(self, stream_id: str) -> tuple[list[str], list[Any]]:
        """KEYS and the first ARGV of every script (see :data:`_ACCOUNTING`)."""
        keys = [*self._keys(stream_id), self._lease_key(stream_id), HELD, TOTAL, DONE, LIVE]
        return keys, [stream_id, self._max_bytes]

    def _hold(self, stream_id: str) -> None:
        """This process produces ``stream_id`` now: keep renewing its lease."""
        self._producing.add(stream_id)
        loop = asyncio.get_running_loop()
        if self._renewer is None or self._renewer.done():
            self._renewer = loop.create_task(self._renew_leases())
        if self._on_cancel is not None and (self._listener is None or self._listener.done()):
            self._listener = loop.create_task(self._listen_for_cancels())

    def _cancelled(self, stream_id: str) -> None:
        if stream_id in self._producing and self._on_cancel is not None:
            self._on_cancel(stream_id)

    async def _renew_leases(self) -> None:
        """Every third of the lease: one pipeline that renews the lease of every
        stream this process produces and reads their cancel flags (the backstop
        for a cancel message missed). A failed round is logged and retried at
        the next; lapsing is what followers detect, so there is no other fallback."""
        interval = self._lease_ms / 3000
        while self._producing:
            await asyncio.sleep(interval)
            ids = list(self._producing)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for stream_id in ids:
                        pipe.pexpire(self._lease_key(stream_id), self._lease_ms)
                        pipe.exists(self._keys(stream_id)[2])
                    replies = await pipe.execute()
            except REDIS_ERRORS as exc:
                log.warning("producer_lease_renew_failed", streams=len(ids), error=repr(exc))
                continue
            for stream_id, flagged in zip(ids, replies[1::2], strict=True):
                if flagged:
                    self._cancelled(stream_id)

    async def _listen_for_cancels(self) -> None:
        """Subscribe to :data:`CANCEL_CHANNEL` for as long as the store lives;
        resubscribe a second after a Redis error."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CANCEL_CHANNEL)
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self._cancelled(data.decode())
            except REDIS_ERRORS as exc:
                log.warning("cancel_subscription_lost", error=repr(exc))
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(1.0)

    async def create(self, stream_id: str, owner: str | None, context: bytes | None = None) -> None:
        size = len(context or b"")
        if size > self._max:
            raise too_large_context(size, self._max)
        keys, args = self._script_keys(stream_id)
        args += [owner or "", context or b"", self._running_ms, self._lease_ms]
        try:
            created = int(await self._create(keys=keys, args=args))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        if created == -2:
            raise StreamTooLarge("The stream store is full")
        self._hold(stream_id)

    async def append(
        self,
        stream_id: str,
        events: Sequence[bytes],
        snapshot: bytes | None = None,
        *,
        final: bool = False,
    ) -> int:
        keys, args = self._script_keys(stream_id)
        size = sum(len(e) for e in events)
        args += [size, 1 if final else 0, self._max, snapshot or b"", self._running_ms]
        try:
            count = int(await self._append(keys=keys, args=[*args, *events]))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        if count == -2:
            raise StreamTooLarge(f"The stream passed the store's bound of {self._max} bytes")
        if count == -4:
            raise StreamTooLarge("The stream store is full")
        if count == -3:
            raise StreamCancelled("The response was cancelled")
        if count == -1:
            raise StreamGone(f"The stream {stream_id} no longer exists")
        return count - 1

    async def close(
        self,
        stream_id: str,
        status: StoredStatus,
        snapshot: bytes | None = None,
        ttl_s: float | None = None,
    ) -> None:
        ttl_ms = self._ttl_ms if ttl_s is None else int(ttl_s * 1000)
        self._producing.discard(stream_id)
        keys, args = self._script_keys(stream_id)
        try:  # one script: a stream deleted meanwhile is not brought back
            await self._close(keys=keys, args=[*args, str(status), snapshot or b"", ttl_ms])
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def get(self, stream_id: str) -> StoredStream | None:
        """See :meth:`StreamStore.get`; a stream still ``in_progress`` whose
        producer's lease lapsed is reported ``failed`` (its producer was lost)."""
        _, meta, _ = self._keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(meta)
                pipe.exists(self._lease_key(stream_id))
                raw, leased = cast("tuple[dict[bytes, bytes], int]", await pipe.execute())
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        if not raw:
            return None
        status = StoredStatus(raw[b"status"].decode())
        if status.running and not leased:
            status = StoredStatus.FAILED
        return StoredStream(
            stream_id,
            raw[b"owner"].decode() or None,
            status,
            int(raw[b"count"]),
            int(raw[b"size"]),
            raw.get(b"snapshot"),
            raw.get(b"context") or None,
        )

    async def read(self, stream_id: str, after: int, wait_s: float) -> StoredEvents:
        """See :meth:`StreamStore.read`: ``XREAD BLOCK`` on the stream's entries
        after ``0-{after + 1}``; after a quiet wait, the stream's status and
        producer lease are checked (:class:`~gateway.errors.ProducerLost`)."""
        events_key = self._keys(stream_id)[0]
        block_ms = max(1, min(FOLLOW_BLOCK_MS, int(wait_s * 1000)))
        try:
            reply = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                await self._blocking.xread(
                    {events_key: f"0-{after + 1}"}, count=READ_BATCH, block=block_ms
                ),
            )
            if not reply:
                return StoredEvents((), ended=await self._producer_gone(stream_id))
        except PoolExhausted:
            # Busy, not down: nothing read yet; the reader asks again, bounded
            # by its own timers.
            return StoredEvents((), ended=False)
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        events: list[bytes] = []
        for _, entries in reply:
            for _, fields in entries:
                if b"end" in fields:
                    return StoredEvents(tuple(events), ended=True)
                events.append(fields[b"e"])
        return StoredEvents(tuple(events), ended=False)

    async def _producer_gone(self, stream_id: str) -> bool:
        """After a quiet second: True when the stream is gone (deleted or
        expired: the follower ends), raises ProducerLost when it runs with no
        live producer, False while it runs with one."""
        _, meta, _ = self._keys(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(meta, "status")
            pipe.exists(self._lease_key(stream_id))
            status, leased = await pipe.execute()
        if status is None:
            return True
        if StoredStatus(status.decode()).running and not leased:
            # Read once more: the end entry may have landed since the XREAD.
            ended = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                await self._redis.xrevrange(PREFIX + stream_id, count=1),
            )
            if not (ended and b"end" in ended[0][1]):
                raise ProducerLost(
                    "The replica generating this stream stopped before it ended "
                    "(producer lost); the events before this one are all there is",
                    detail=f"stream {stream_id}: lease {self._lease_key(stream_id)} lapsed",
                )
        return False

    async def request_cancel(self, stream_id: str) -> None:
        _, _, cancel = self._keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(cancel, b"1", px=self._running_ms)
                pipe.publish(CANCEL_CHANNEL, stream_id)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def delete(self, stream_id: str) -> bool:
        self._producing.discard(stream_id)
        keys, args = self._script_keys(stream_id)
        try:
            return bool(await self._delete(keys=keys, args=args))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def aclose(self) -> None:
        """Stop renewing leases and close the followers' pool (the shared client
        belongs to the app: gateway.redisconn). A stream still running lapses
        like a killed one."""
        self._producing.clear()
        for task in (self._renewer, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._blocking.aclose()


def _unavailable(exc: BaseException) -> GatewayError:
    """A Redis failure as the client's error: busy (every pooled connection
    in use for ``pool_timeout_s``: 503 ``state_busy``) is not Redis being down."""
    if isinstance(exc, PoolExhausted):
        log.warning("state_pool_exhausted", store="stream", detail=str(exc))
        return StateBusy(
            "The gateway is busy (all its connections to the stream store are in use); "
            "retry shortly",
            retry_after=1,
            detail=f"{type(exc).__name__}: {exc}",
        )
    return StoreUnavailable(
        "The stream store is unavailable", detail=f"{type(exc).__name__}: {exc}"
    )
