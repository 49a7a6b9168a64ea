"""Admission when the shared store cannot be reached: ``limits.on_store_failure`` decides for
keys with a rate or concurrency limit (fail_closed: 503 ``limits_unavailable``; fail_open:
admitted, logged once per outage); keys without limits are admitted either way, their lease
held until the store can record it. In one process, a key without limits needs no lease."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from proxy.auth.keys import Key
from proxy.core.errors import GatewayError
from proxy.fleet.batch import Batch
from proxy.fleet.client import connect
from proxy.fleet.leases_memory import MemoryLeases
from proxy.fleet.leases_redis import RedisLeases
from proxy.fleet.policy import StorePolicy
from proxy.limits.counters import MemoryCounters, RedisCounters
from proxy.limits.guard import Guard

RATED = Key("rated", requests_per_minute=10)
CAPPED = Key("capped", concurrent_jobs=1)
FREE = Key("free")


@pytest.fixture
async def down() -> AsyncIterator[tuple[RedisCounters, RedisLeases]]:
    """Counters and leases on a Redis nobody answers for."""
    client = connect("redis://127.0.0.1:1/0", 0.2)  # nothing listens there
    policy = StorePolicy(client.ping, timeout=0.2)
    leases = RedisLeases(Batch(client), policy, "test", lease_seconds=10, instance="i",
                         retention=60)
    try:
        yield RedisCounters(client, "test", policy), leases
    finally:
        await leases.aclose()
        await policy.aclose()
        await client.aclose()


def job() -> str:
    return str(uuid.uuid4())


async def test_fail_closed_refuses_limited_keys_only(
        down: tuple[RedisCounters, RedisLeases]) -> None:
    counters, leases = down
    guard = Guard(counters, leases, None, fail_closed=True)
    for key in (RATED, CAPPED):
        with pytest.raises(GatewayError) as caught:
            await guard.admit(key, job())
        error = caught.value
        assert (error.status, error.code, error.headers["retry-after"]) == (
            503, "limits_unavailable", "2")
    admitted = await guard.admit(FREE, job())  # nothing to check: admitted
    assert admitted.job is not None and admitted.job.token in leases.held  # renewed later


async def test_fail_open_admits_and_says_so_once(
        down: tuple[RedisCounters, RedisLeases], caplog: pytest.LogCaptureFixture) -> None:
    counters, leases = down
    caplog.set_level(logging.WARNING, "proxy.limits")
    guard = Guard(counters, leases, None)
    admitted = [await guard.admit(key, job()) for key in (RATED, CAPPED, CAPPED, FREE)]
    assert all(a.job is not None for a in admitted)
    assert admitted[0].headers == {}  # no rate-limit headers: nothing was counted
    lines = [r.getMessage() for r in caplog.records if r.name == "proxy.limits"]
    assert len(lines) == 1 and "fail_open" in lines[0]
    for one in admitted:
        await one.release()  # best effort: never raises
    assert not leases.held


async def test_one_process_leases_only_limited_keys() -> None:
    leases = MemoryLeases()
    guard = Guard(MemoryCounters(), leases, None)
    assert (await guard.admit(FREE, job())).job is None
    held = await guard.admit(CAPPED, job())
    assert held.job is not None
    with pytest.raises(GatewayError) as caught:
        await guard.admit(CAPPED, job())
    assert (caught.value.status, caught.value.code) == (429, "concurrency_limit_exceeded")
    await held.release()
    assert (await guard.admit(CAPPED, job())).job is not None
