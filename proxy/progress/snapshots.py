"""Where the last snapshot of every job is kept, for subscribe acks and plain-HTTP readers.

One interface, two backends side by side: in memory (one process) and Redis (several
processes or hosts; every key starts with the configured prefix). Snapshots
outlive their job for ``retention`` seconds.
"""

from __future__ import annotations

import heapq
import time
from typing import Protocol

import orjson
from redis.asyncio import Redis

from proxy.progress.snapshot import JobSnapshot


class SnapshotStore(Protocol):
    async def create(self, snapshot: JobSnapshot) -> bool:
        """Store the first snapshot of a job; False if that job id is already taken."""

    async def put(self, snapshot: JobSnapshot) -> None:
        """Replace a job's snapshot (and restart its retention clock)."""

    async def get(self, job_id: str) -> JobSnapshot | None: ...

    async def aclose(self) -> None: ...


class MemorySnapshotStore:
    """A dict with expiry; expired entries are swept as new ones arrive."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._items: dict[str, tuple[float, JobSnapshot]] = {}
        self._expiry: list[tuple[float, str]] = []

    def _sweep(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, job_id = heapq.heappop(self._expiry)
            item = self._items.get(job_id)
            if item is not None and item[0] <= now:
                del self._items[job_id]

    def _store(self, snapshot: JobSnapshot, now: float) -> None:
        expires = now + self.retention
        self._items[snapshot.job_id] = (expires, snapshot)
        heapq.heappush(self._expiry, (expires, snapshot.job_id))

    async def create(self, snapshot: JobSnapshot) -> bool:
        now = time.monotonic()
        self._sweep(now)
        if snapshot.job_id in self._items:
            return False
        self._store(snapshot, now)
        return True

    async def put(self, snapshot: JobSnapshot) -> None:
        now = time.monotonic()
        self._sweep(now)
        self._store(snapshot, now)

    async def get(self, job_id: str) -> JobSnapshot | None:
        now = time.monotonic()
        item = self._items.get(job_id)
        if item is None or item[0] <= now:
            return None
        return item[1]

    async def aclose(self) -> None:
        self._items.clear()
        self._expiry.clear()


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
