"""The rate counters behind the limits: one interface, two backends side by side (in memory for
one process, Redis when several processes share the keys), like python-socketio's client
managers. A key's concurrency slots are not counters: they are per-job entries held by the job's
lease (:mod:`proxy.fleet.leases`), so a slot frees itself when its job's instance is gone."""

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


class MemoryCounters:
    """Exact sliding-window logs for one process."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

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


class RedisCounters:
    """Rate windows that hold across every process of the gateway; every call goes through the
    store's ``policy``."""

    def __init__(self, redis: Redis, prefix: str, policy: StorePolicy) -> None:
        self.prefix = f"{prefix}:limit:"
        self.policy = policy
        self._hit = redis.register_script(_HIT)

    async def hit(self, key: str, limit: int, window: float) -> WindowState:
        now = time.time()
        allowed, count, first = await self.policy.call("rate limit", lambda: self._hit(
            keys=[self.prefix + key], args=[now, window, limit, f"{now}:{uuid.uuid4().hex}"]))
        reset = max(0.0, float(first) + window - now) if count >= limit else 0.0
        return WindowState(bool(allowed), limit, max(0, limit - int(count)), reset)
