"""The stream store in Redis: one Redis Stream per stream id, shared by every
process and replica (``[state] redis_url``).

Keys, under ``sluice:s:{id}``: the events as a Redis Stream with explicit ids
``0-{n+1}`` for event ``n`` (so ``starting_after=N`` is ``XRANGE (0-{N+1}``),
an ``end`` entry that closes it, and a hash ``...:m`` with the owner, status,
size, event count and snapshot. An append is one Lua script (bound check,
``XADD``\\s, counters, expiry) so concurrent readers never see half of one.
Running streams expire ``running_ttl_s`` after their last append (a producer
that died does not leave them forever); finished ones ``ttl_s`` after they end.
A cancel from any replica sets ``...:c``; the producer's next append sees it
and stops (:class:`~gateway.errors.StreamCancelled`).

Redis errors become :class:`~gateway.errors.StateUnavailable`-like
``GatewayError``\\s (503): the caller decides what a stream does without its store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from ..errors import GatewayError, StreamCancelled
from ..redisconn import REDIS_ERRORS
from .base import StoredStream, StreamTooLarge

PREFIX = "sluice:s:"
FOLLOW_BLOCK_MS = 1000
"""A follower re-checks that its stream still exists this often."""

_APPEND = """
local size = tonumber(redis.call('HGET', KEYS[2], 'size') or '-1')
if size < 0 then return -1 end
local add = tonumber(ARGV[1])
if ARGV[2] == '0' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
  if size + add > tonumber(ARGV[3]) then return -2 end
end
local n = tonumber(redis.call('HGET', KEYS[2], 'count'))
for i = 6, #ARGV do
  redis.call('XADD', KEYS[1], '0-' .. (n + i - 5), 'e', ARGV[i])
end
n = n + #ARGV - 5
redis.call('HSET', KEYS[2], 'count', n, 'size', size + add)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'snapshot', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return n
"""


class StoreUnavailable(GatewayError):
    """The stream store (Redis) did not answer."""

    status, type, anthropic_type, code = 503, "unavailable", "api_error", "store_unavailable"


class RedisStreamStore:
    """See the module docstring; implements :class:`~gateway.store.base.StreamStore`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_s: float,
        stream_max_bytes: int,
        running_ttl_s: float = 3600.0,
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._running_ms = int(running_ttl_s * 1000)
        self._max = stream_max_bytes
        self._append = client.register_script(_APPEND)

    @staticmethod
    def _keys(stream_id: str) -> tuple[str, str, str]:
        base = PREFIX + stream_id
        return base, base + ":m", base + ":c"

    async def create(self, stream_id: str, owner: str | None, context: bytes | None = None) -> None:
        events, meta, cancel = self._keys(stream_id)
        fields: dict[str, Any] = {"owner": owner or "", "status": "in_progress", "size": 0,
                                  "count": 0, "context": context or b""}  # fmt: skip
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(events, meta, cancel)
                pipe.hset(meta, mapping=cast(Any, fields))
                pipe.pexpire(meta, self._running_ms)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def append(
        self,
        stream_id: str,
        events: Sequence[bytes],
        snapshot: bytes | None = None,
        *,
        final: bool = False,
    ) -> int:
        keys = self._keys(stream_id)
        size = sum(len(e) for e in events)
        args: list[Any] = [size, 1 if final else 0, self._max, snapshot or b"", self._running_ms]
        try:
            count = int(await self._append(keys=list(keys), args=[*args, *events]))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        if count == -2:
            raise StreamTooLarge(f"The stream passed the store's bound of {self._max} bytes")
        if count == -3:
            raise StreamCancelled("The response was cancelled")
        if count == -1:
            raise KeyError(stream_id)
        return count - 1

    async def close(
        self,
        stream_id: str,
        status: str,
        snapshot: bytes | None = None,
        ttl_s: float | None = None,
    ) -> None:
        events, meta, _ = self._keys(stream_id)
        ttl_ms = self._ttl_ms if ttl_s is None else int(ttl_s * 1000)
        fields: dict[str, bytes | str] = {"status": status}
        if snapshot is not None:
            fields["snapshot"] = snapshot
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(meta, mapping=cast(Any, fields))
                pipe.xadd(events, {"end": b"1"})  # auto id: after every 0-n id
                pipe.pexpire(events, ttl_ms)
                pipe.pexpire(meta, ttl_ms)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def get(self, stream_id: str) -> StoredStream | None:
        _, meta, _ = self._keys(stream_id)
        try:
            raw = cast("dict[bytes, bytes]", await self._redis.hgetall(meta))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None
        if not raw:
            return None
        return StoredStream(
            stream_id,
            raw[b"owner"].decode() or None,
            raw[b"status"].decode(),
            int(raw[b"count"]),
            int(raw[b"size"]),
            raw.get(b"snapshot"),
            raw.get(b"context") or None,
        )

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[bytes]:
        events, meta, _ = self._keys(stream_id)
        last = f"0-{after + 1}" if after >= 0 else "0-0"  # entry id of event ``after``
        while True:
            try:
                reply = cast(
                    "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                    await self._redis.xread({events: last}, count=256, block=FOLLOW_BLOCK_MS),
                )
                if not reply and not await self._redis.exists(meta):
                    return
            except REDIS_ERRORS as exc:
                raise _unavailable(exc) from None
            for _, entries in reply:
                for entry_id, fields in entries:
                    if b"end" in fields:
                        return
                    last = entry_id.decode()
                    yield fields[b"e"]

    async def request_cancel(self, stream_id: str) -> None:
        _, _, cancel = self._keys(stream_id)
        try:
            await self._redis.set(cancel, b"1", px=self._running_ms)
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def delete(self, stream_id: str) -> bool:
        try:
            return bool(await self._redis.delete(*self._keys(stream_id)))
        except REDIS_ERRORS as exc:
            raise _unavailable(exc) from None

    async def aclose(self) -> None:
        return None  # the client belongs to the app (gateway.redisconn)


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        "The stream store is unavailable", detail=f"{type(exc).__name__}: {exc}"
    )
