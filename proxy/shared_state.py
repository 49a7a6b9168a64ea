"""State several gateway processes share through Redis: job snapshots, async-job results, rate
and concurrency counters. Each is the Redis twin of an in-memory class with the same methods
(``progress.store``, ``progress.results``, ``limits.counters``); ``redis_url`` picks which.

Every key starts with the configured prefix, so several deployments (or test runs) can share one
Redis without seeing each other's state.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from proxy.limits.counters import WindowState
from proxy.progress.snapshot import JobSnapshot

# Sliding-window log in a sorted set: drop entries older than the window, count, add if room.
_HIT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local first = oldest[2] and tonumber(oldest[2]) or now
if count >= limit then return {0, count, tostring(first)} end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {1, count + 1, tostring(first)}
"""
# Concurrent slots: a counter that never passes the limit (and expires if a process dies).
_ACQUIRE = """
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
_RELEASE = """
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken <= 1 then redis.call('DEL', KEYS[1]) else redis.call('DECR', KEYS[1]) end
return 1
"""
# A slot is freed at the latest this long after its last acquisition, if its process died.
SLOT_TTL = 3600


class RedisSnapshotStore:
    def __init__(self, redis: Redis, prefix: str, retention: float) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:job:"
        self.retention = max(1, round(retention))

    async def create(self, snapshot: JobSnapshot) -> bool:
        stored = await self.redis.set(self.prefix + snapshot.job_id,
                                      orjson.dumps(snapshot.to_store()), nx=True,
                                      ex=self.retention)
        return bool(stored)

    async def put(self, snapshot: JobSnapshot) -> None:
        await self.redis.set(self.prefix + snapshot.job_id, orjson.dumps(snapshot.to_store()),
                             ex=self.retention)

    async def get(self, job_id: str) -> JobSnapshot | None:
        raw = await self.redis.get(self.prefix + job_id)
        return JobSnapshot.from_store(orjson.loads(raw)) if raw else None

    async def aclose(self) -> None:
        """The connection belongs to the gateway."""


class RedisResultStore:
    def __init__(self, redis: Redis, prefix: str, retention: float) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:result:"
        self.retention = max(1, round(retention))

    async def put(self, job_id: str, result: dict[str, Any]) -> None:
        await self.redis.set(self.prefix + job_id, orjson.dumps(result), ex=self.retention)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.prefix + job_id)
        return orjson.loads(raw) if raw else None


class RedisCounters:
    """Rate windows and concurrency slots that hold across every process of the gateway."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = f"{prefix}:limit:"
        self._hit = redis.register_script(_HIT)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        now = time.time()
        allowed, count, first = await self._hit(
            keys=[self.prefix + key], args=[now, window, limit, f"{now}:{uuid.uuid4().hex}"])
        reset = max(0.0, float(first) + window - now) if count >= limit else 0.0
        return WindowState(bool(allowed), limit, max(0, limit - int(count)), reset)

    async def acquire(self, key: str, limit: int) -> bool:
        return bool(await self._acquire(keys=[self.prefix + key], args=[limit, SLOT_TTL]))

    async def release(self, key: str) -> None:
        await self._release(keys=[self.prefix + key])
