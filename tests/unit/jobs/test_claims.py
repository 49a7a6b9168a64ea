"""The claim stores, memory and Redis side by side: an id is taken once, only its attempt
settles it, a kept answer holds the id, a released one frees it (its answer still readable),
and claims expire."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from proxy.core.errors import GatewayError
from proxy.jobs.claims import Claim, ClaimStore, MemoryClaimStore, RedisClaimStore

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")
ANSWER = {"body": {"data": [{"b64_json": b"iVBORw0KGgo="}], "cost": 0.04}}
KEPT = {"body": {"data": [{"b64_json": "iVBORw0KGgo="}], "cost": 0.04}}  # bytes kept as text


def claim(token: str = "t1", fingerprint: str = "f1", owner: str = "alice") -> Claim:
    return Claim(fingerprint, owner, token, stream=True)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ClaimStore]:
    if request.param == "memory":
        yield MemoryClaimStore()
        return
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)
    try:
        yield RedisClaimStore(client, prefix)
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_an_id_is_claimed_once_and_kept_with_its_answer(store: ClaimStore) -> None:
    job = str(uuid.uuid4())
    assert await store.claim(job, claim(), ttl=60) is None
    held = await store.claim(job, claim("t2", "f2", "bob"), ttl=60)
    assert held == claim() and held.running, "the first claim holds; the second learns whose"
    await store.keep(job, "t2", ANSWER, ttl=60)  # not the holder: nothing happens
    assert (await store.get(job)) == claim()
    await store.keep(job, "t1", ANSWER, ttl=60)
    kept = await store.get(job)
    assert kept is not None and not kept.running and not kept.free
    assert kept.answer in (ANSWER, KEPT) and kept.stream
    assert await store.claim(job, claim("t3"), ttl=60) == kept, "a kept answer holds the id"


async def test_a_released_id_is_free_and_its_answer_readable(store: ClaimStore) -> None:
    job = str(uuid.uuid4())
    await store.claim(job, claim(), ttl=60)
    error = {"error": {"status": 429, "body": {"error": {"message": "slow down"}}}}
    await store.release(job, "t1", error, ttl=60)
    freed = await store.get(job)
    assert freed is not None and freed.free and freed.answer == error and not freed.running
    assert await store.claim(job, claim("t2", "f2"), ttl=60) is None, "a retry takes it"
    assert (await store.get(job)) == claim("t2", "f2")
    await store.release(job, "t2", None, ttl=60)  # cancelled: nothing to read
    assert await store.get(job) is None


async def test_claims_expire(store: ClaimStore) -> None:
    job = str(uuid.uuid4())
    await store.claim(job, claim(), ttl=0.2)
    await asyncio.sleep(0.3)  # its process died: the id is not held forever
    assert await store.get(job) is None
    assert await store.claim(job, claim("t2"), ttl=60) is None


async def test_a_running_claim_lives_while_its_attempt_renews_it(store: ClaimStore) -> None:
    job = str(uuid.uuid4())
    await store.claim(job, claim(), ttl=0.4)
    await asyncio.sleep(0.2)
    await store.renew(job, "t2", ttl=60)  # not the holder: nothing happens
    await store.renew(job, "t1", ttl=0.6)
    await asyncio.sleep(0.35)  # past the first ttl
    assert await store.get(job) == claim()
    await asyncio.sleep(0.4)  # no renewal: its process died
    assert await store.get(job) is None


async def test_concurrent_claims_one_winner(store: ClaimStore) -> None:
    job = str(uuid.uuid4())
    results = await asyncio.gather(*(store.claim(job, claim(f"t{i}"), ttl=60)
                                     for i in range(10)))
    assert sum(result is None for result in results) == 1


async def test_redis_that_does_not_answer_is_a_503() -> None:
    client = aioredis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    store = RedisClaimStore(client, "nowhere")
    try:
        with pytest.raises(GatewayError) as caught:
            await store.claim(str(uuid.uuid4()), claim(), ttl=60)
    finally:
        await client.aclose()
    assert caught.value.status == 503 and caught.value.code == "store_unavailable"
    assert caught.value.response_headers()["retry-after"] == "2"
