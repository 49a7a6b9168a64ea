"""Hubs for progress tests: an emitter that records what would reach Socket.IO, rooms said to be
watched in this process, and Redis stores under a prefix of their own (several hubs sharing one
prefix behave as several gateway processes sharing Redis)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from proxy.fleet.batch import Batch
from proxy.fleet.policy import StorePolicy
from proxy.progress.hub import ProgressHub
from proxy.progress.latency import LatencyBook
from proxy.progress.snapshots import MemorySnapshotStore, RedisSnapshotStore, SnapshotStore

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")


def redis_store(client: aioredis.Redis, prefix: str, **kwargs: Any) -> RedisSnapshotStore:
    """A Redis snapshot store as the gateway builds one: one batch, one policy."""
    return RedisSnapshotStore(Batch(client), StorePolicy(client.ping, timeout=1), prefix,
                              **kwargs)


class Recorder:
    """Stands in for the Socket.IO server: every ``progress`` event, with its room."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.delay = delay

    async def emit(self, event: str, data: Any, *, to: str, namespace: str) -> None:
        assert event == "progress" and namespace == "/image-progress"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sent.append((to, data))

    def events(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return [data for _, data in self.sent if job_id is None or data["job_id"] == job_id]


class Process:
    """One gateway process's progress side: its hub, its emitter, the rooms watched here."""

    def __init__(self, store: SnapshotStore, emitter: Recorder | None = None) -> None:
        self.rooms: set[str] = set()
        self.emitter = emitter or Recorder()
        self.hub = ProgressHub(store, LatencyBook(), sync_interval=0.05, refresh_seconds=0.05)
        self.hub.attach(self.emitter, self.rooms.__contains__)

    async def settled(self) -> None:
        """Everything queued for watchers has been emitted."""
        await self.hub.outbox.idle()


@pytest.fixture
def memory_process() -> Process:
    return Process(MemorySnapshotStore(retention=60))


@pytest.fixture
async def redis_processes() -> AsyncIterator[Callable[[], Process]]:
    """Make processes that share one Redis prefix (this test's only)."""
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)
    made: list[Process] = []

    def make() -> Process:
        made.append(Process(redis_store(client, prefix, retention=60, watch_ttl=5)))
        return made[-1]

    try:
        yield make
    finally:
        for process in made:
            await process.hub.aclose()
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
