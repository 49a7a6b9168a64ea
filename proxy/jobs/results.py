"""Finished results of detached (async) jobs, kept for a while for ``GET /v1/images/jobs``."""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis


class ResultStore(Protocol):
    async def put(self, job_id: str, result: dict[str, Any]) -> None:
        """Keep ``result`` (a response body or an error body) for the job's retention."""

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def delete(self, job_id: str) -> None:
        """Forget a job's result (its id is used again, by a new attempt)."""


class MemoryResultStore:
    """In memory, expiring with the job snapshots (``jobs.retention_seconds``)."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    async def put(self, job_id: str, result: dict[str, Any]) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._items.items() if expires <= now]:
            del self._items[key]
        self._items[job_id] = (now + self.retention, result)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        item = self._items.get(job_id)
        if item is None or item[0] <= time.monotonic():
            return None
        return item[1]

    async def delete(self, job_id: str) -> None:
        self._items.pop(job_id, None)


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

    async def delete(self, job_id: str) -> None:
        await self.redis.delete(self.prefix + job_id)
