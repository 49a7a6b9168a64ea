"""Finished results of detached (async) jobs, kept for a while for ``GET /v1/images/jobs``.

With Redis, a result that cannot be written (the store is away) is kept in this process and
written once the store answers (:class:`~proxy.fleet.policy.WriteBehind`); reading one that is
not here while the store is away is a 503 ``store_unavailable``."""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from proxy.fleet.policy import StorePolicy, WriteBehind


class ResultStore(Protocol):
    async def put(self, job_id: str, result: dict[str, Any]) -> None:
        """Keep ``result`` (a response body or an error body) for the job's retention."""

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def delete(self, job_id: str) -> None:
        """Forget a job's result (its id is used again, by a new attempt)."""

    async def aclose(self) -> None: ...


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

    async def aclose(self) -> None:
        self._items.clear()


class RedisResultStore:
    def __init__(self, redis: Redis, prefix: str, retention: float,
                 policy: StorePolicy) -> None:
        self.redis = redis
        self.policy = policy
        self.prefix = f"{prefix}:result:"
        self.retention = max(1, round(retention))
        self._kept: WriteBehind[dict[str, Any]] = WriteBehind(self._write)

    async def put(self, job_id: str, result: dict[str, Any]) -> None:
        await self._kept.put(job_id, result)

    async def _write(self, results: dict[str, dict[str, Any]]) -> None:
        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, result in results.items():
                    pipe.set(self.prefix + job_id, orjson.dumps(result), ex=self.retention)
                await pipe.execute()

        await self.policy.call("writing a job's result", write)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        kept = self._kept.pending(job_id)
        if kept is not None:
            return kept
        raw = await self.policy.call("reading a job's result",
                                     lambda: self.redis.get(self.prefix + job_id))
        return orjson.loads(raw) if raw else None

    async def delete(self, job_id: str) -> None:
        self._kept.discard(job_id)
        await self.policy.call("forgetting a job's result",
                               lambda: self.redis.delete(self.prefix + job_id))

    async def aclose(self) -> None:
        await self._kept.aclose()
