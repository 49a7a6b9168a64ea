"""Lease tables for the fleet's unit tests: the memory twin, and Redis tables sharing a prefix
of their own in the shared test database (several tables on one prefix behave as several
instances)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from proxy.fleet.batch import Batch
from proxy.fleet.leases import LeaseTable
from proxy.fleet.leases_memory import MemoryLeases
from proxy.fleet.leases_redis import RedisLeases
from proxy.fleet.policy import StorePolicy

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")

# make(lease_seconds, instance) -> a table; tables made by one factory share their store.
Tables = Callable[..., LeaseTable]


@asynccontextmanager
async def shared_redis_tables() -> AsyncIterator[Tables]:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)
    made: list[LeaseTable] = []

    def make(lease_seconds: float = 10.0, instance: str = "i1") -> LeaseTable:
        policy = StorePolicy(client.ping, timeout=1)
        made.append(RedisLeases(Batch(client), policy, prefix, lease_seconds=lease_seconds,
                                instance=instance, retention=60))
        return made[-1]

    try:
        yield make
    finally:
        for table in made:
            await table.aclose()
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_tables() -> AsyncIterator[Tables]:
    async with shared_redis_tables() as make:
        yield make


@pytest.fixture(params=["memory", "redis"])
async def tables(request: pytest.FixtureRequest) -> AsyncIterator[Tables]:
    """Both twins; a memory table is one process, so the factory hands out the same one."""
    if request.param == "redis":
        async with shared_redis_tables() as make:
            yield make
        return
    made: dict[str, MemoryLeases] = {}

    def make(lease_seconds: float = 10.0, instance: str = "i1") -> LeaseTable:
        return made.setdefault("one", MemoryLeases(lease_seconds, instance, retention=60))

    yield make
    for table in made.values():
        await table.aclose()
