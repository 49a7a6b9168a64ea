"""The shared store as a dependency that fails, against a redis-server of the test's own: an
outage is noticed by one call, logged once, answered at once while it lasts (no round trip),
and ends by itself when Redis answers again; a frozen Redis costs a call its timeout, no more;
writes that must land are kept and written once it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from proxy.core.errors import StoreUnavailable
from proxy.fleet.client import connect
from proxy.fleet.policy import StorePolicy, WriteBehind
from tests.support.redis_server import RedisServer, redis_server

TIMEOUT = 0.3


@pytest.fixture
async def store() -> AsyncIterator[tuple[RedisServer, Redis, StorePolicy]]:
    with redis_server() as server:
        client = connect(server.url, TIMEOUT)
        policy = StorePolicy(client.ping, timeout=TIMEOUT, probe_every=0.1)
        try:
            yield server, client, policy
        finally:
            await policy.aclose()
            await client.aclose()


async def back(policy: StorePolicy) -> float:
    started = time.monotonic()
    while not policy.up:
        assert time.monotonic() - started < 3, "the outage never ended"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_an_outage_is_noticed_once_answered_at_once_and_ends_by_itself(
        store: tuple[RedisServer, Redis, StorePolicy], caplog: pytest.LogCaptureFixture) -> None:
    server, client, policy = store
    caplog.set_level(logging.WARNING, "proxy.fleet")
    assert await policy.call("set", lambda: client.set("k", "v"))
    server.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await policy.call("get", lambda: client.get("k"))
    assert time.monotonic() - started < 2 * TIMEOUT
    assert caught.value.status == 503 and caught.value.headers["retry-after"] == "2"
    assert not policy.up and "redis unreachable" in policy.describe()

    asked = 0

    def get() -> object:
        nonlocal asked
        asked += 1
        return client.get("k")

    for _ in range(50):  # during the outage: answered at once, Redis is not even asked
        with pytest.raises(StoreUnavailable):
            await policy.call("get", get)
    assert asked == 0
    server.start()  # the same port, empty
    assert await back(policy) < 1
    assert await policy.call("get", lambda: client.get("k")) is None  # the pool reconnected
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "cannot be reached" in lines[0] and "during get" in lines[0]
    assert "answers again" in lines[1] and "(51 calls failed meanwhile)" in lines[1]


async def test_a_frozen_store_costs_a_call_its_timeout_at_most(
        store: tuple[RedisServer, Redis, StorePolicy]) -> None:
    server, client, policy = store
    assert await policy.check()
    server.freeze()  # connections stay open, nothing answers
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await policy.call("get", lambda: client.get("k"))
    assert time.monotonic() - started < 2 * TIMEOUT + 0.2
    server.thaw()
    await back(policy)
    assert await policy.call("set", lambda: client.set("k", "v"))


async def test_writes_that_must_land_are_kept_until_the_store_takes_them(
        store: tuple[RedisServer, Redis, StorePolicy]) -> None:
    server, client, policy = store

    async def write(values: dict[str, str]) -> None:
        await policy.call("write", lambda: client.mset(values))

    kept: WriteBehind[str] = WriteBehind(write, retry_every=0.05)
    try:
        await kept.put("a", "1")
        assert len(kept) == 0 and await client.get("a") == b"1"
        server.kill()
        await asyncio.wait_for(kept.put("b", "2"), TIMEOUT * 3)  # never raises, never hangs
        await kept.put("b", "3")
        assert kept.pending("b") == "3" and len(kept) == 1  # the latest value wins
        server.start()
        for _ in range(100):
            if not len(kept):
                break
            await asyncio.sleep(0.05)
        assert await client.get("b") == b"3" and kept.pending("b") is None
    finally:
        await kept.aclose()
