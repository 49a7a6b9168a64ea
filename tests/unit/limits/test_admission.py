"""Admission when the shared store cannot be reached: ``limits.on_store_failure`` decides for
keys with a rate or concurrency limit (fail_closed: 503 ``limits_unavailable``; fail_open:
admitted, logged once per outage); keys without limits are admitted either way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from proxy.auth.keys import Key
from proxy.core.errors import GatewayError
from proxy.fleet.client import connect
from proxy.fleet.policy import StorePolicy
from proxy.limits.counters import RedisCounters
from proxy.limits.guard import Guard

RATED = Key("rated", requests_per_minute=10)
CAPPED = Key("capped", concurrent_jobs=1)
FREE = Key("free")


@pytest.fixture
async def down() -> AsyncIterator[RedisCounters]:
    """Counters on a Redis nobody answers for."""
    client = connect("redis://127.0.0.1:1/0", 0.2)  # nothing listens there
    policy = StorePolicy(client.ping, timeout=0.2)
    try:
        yield RedisCounters(client, "test", policy)
    finally:
        await policy.aclose()
        await client.aclose()


async def test_fail_closed_refuses_limited_keys_only(down: RedisCounters) -> None:
    guard = Guard(down, None, fail_closed=True)
    for key in (RATED, CAPPED):
        with pytest.raises(GatewayError) as caught:
            await guard.admit(key)
        error = caught.value
        assert (error.status, error.code, error.headers["retry-after"]) == (
            503, "limits_unavailable", "2")
    assert (await guard.admit(FREE)).headers == {}  # nothing to check: admitted


async def test_fail_open_admits_and_says_so_once(
        down: RedisCounters, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "proxy.limits")
    guard = Guard(down, None)
    admitted = [await guard.admit(key) for key in (RATED, CAPPED, CAPPED, FREE)]
    assert admitted[0].headers == {}  # no rate-limit headers: nothing was counted
    lines = [r.getMessage() for r in caplog.records if r.name == "proxy.limits"]
    assert len(lines) == 1 and "fail_open" in lines[0]
    for one in admitted:
        await one.release()  # best effort: never raises
