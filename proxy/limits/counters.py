"""The counters behind the limits: one interface, two backends side by side (in memory for one
process, Redis when several processes share the keys), like python-socketio's client managers."""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from proxy.fleet.policy import StorePolicy


@dataclass(frozen=True, slots=True)
class WindowState:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until a slot frees up (0 when one is free now)


class Counters(Protocol):
    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        """Count one request in a sliding window, unless that would pass ``limit``
        (``StoreUnavailable`` when a shared store cannot be reached)."""

    async def acquire(self, key: str, limit: int) -> bool:
        """Take one of ``limit`` concurrent slots; False when all are taken."""

    async def release(self, key: str) -> None: ...


class MemoryCounters:
    """Exact sliding-window logs and slot counts for one process."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._slots: dict[str, int] = {}

    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        now = time.monotonic()
        log = self._hits.setdefault(key, deque())
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) >= limit:
            return WindowState(False, limit, 0, log[0] + window - now)
        log.append(now)
        reset = log[0] + window - now if len(log) >= limit else 0.0
        return WindowState(True, limit, limit - len(log), reset)

    async def acquire(self, key: str, limit: int) -> bool:
        taken = self._slots.get(key, 0)
        if taken >= limit:
            return False
        self._slots[key] = taken + 1
        return True

    async def release(self, key: str) -> None:
        taken = self._slots.get(key, 0)
        if taken <= 1:
            self._slots.pop(key, None)
        else:
            self._slots[key] = taken - 1


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


class RedisCounters:
    """Rate windows and concurrency slots that hold across every process of the gateway; every
    call goes through the store's ``policy``."""

    def __init__(self, redis: Redis, prefix: str, policy: StorePolicy) -> None:
        self.prefix = f"{prefix}:limit:"
        self.policy = policy
        self._hit = redis.register_script(_HIT)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        now = time.time()
        allowed, count, first = await self.policy.call("rate limit", lambda: self._hit(
            keys=[self.prefix + key], args=[now, window, limit, f"{now}:{uuid.uuid4().hex}"]))
        reset = max(0.0, float(first) + window - now) if count >= limit else 0.0
        return WindowState(bool(allowed), limit, max(0, limit - int(count)), reset)

    async def acquire(self, key: str, limit: int) -> bool:
        return bool(await self.policy.call("concurrency limit", lambda: self._acquire(
            keys=[self.prefix + key], args=[limit, SLOT_TTL])))

    async def release(self, key: str) -> None:
        await self.policy.call("concurrency limit", lambda: self._release(
            keys=[self.prefix + key]))
