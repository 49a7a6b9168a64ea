"""The durable job queue's scripts against a real Redis: an entry goes to one consumer; its
runner keeps it by renewing it; a lapsed one is taken over with its started mark; a runner that
lost its entry neither marks it nor writes its end; the end and the result land together and
the entry is acknowledged and gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import redis.asyncio as aioredis

from proxy.fleet.batch import Batch
from proxy.fleet.policy import StorePolicy
from proxy.fleet.queue import GROUP, JobQueue, QueueFull
from tests.unit.fleet.conftest import REDIS_URL

Queues = Callable[..., JobQueue]
QUEUED = orjson.dumps({"job_id": "j", "status": "queued"})


@pytest.fixture
async def queues() -> AsyncIterator[Queues]:
    """``queues(consumer)``: the queue as one instance sees it (all share a prefix)."""
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)

    def make(consumer: str = "a", lease_seconds: float = 0.3, most: int = 100) -> JobQueue:
        return JobQueue(client, Batch(client), StorePolicy(client.ping, timeout=1), prefix,
                        consumer=consumer, lease_seconds=lease_seconds, retention=60,
                        max_length=most)

    try:
        yield make
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def queued(queue: JobQueue, job_id: str | None = None) -> str:
    job_id = job_id or str(uuid.uuid4())
    assert await queue.enqueue(job_id, b"{}", QUEUED, replace=False) is not None
    return job_id


async def test_each_entry_goes_to_one_consumer(queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    jobs = {await queued(a) for _ in range(3)}
    first = await a.read(2)
    second = await b.read(10)
    assert len(first) == 2 and len(second) == 1
    assert {e.job_id for e in first + second} == jobs
    assert await a.read(10) == []


async def test_a_queued_job_s_place_counts_down_until_a_runner_takes_it(
        queues: Queues) -> None:
    queue = queues("a")
    first, second = await queued(queue), await queued(queue)
    assert [await queue.position(first), await queue.position(second)] == [1, 2]
    await queue.read(1)
    assert [await queue.position(first), await queue.position(second)] == [None, 1]


async def test_a_taken_job_id_and_a_full_queue_are_refused(queues: Queues) -> None:
    queue = queues(most=2)
    job_id = await queued(queue)
    assert await queue.enqueue(job_id, b"{}", QUEUED, replace=False) is None
    await queued(queue)
    with pytest.raises(QueueFull):
        await queue.enqueue(str(uuid.uuid4()), b"{}", QUEUED, replace=False)


async def test_a_renewed_entry_is_kept_and_a_lapsed_one_taken_over_with_its_mark(
        queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    await queued(a)
    await queued(a)
    kept, dropped = await a.read(2)
    assert await a.mark_started(dropped)
    for _ in range(4):  # a lease and more, renewing only one of them
        await asyncio.sleep(0.1)
        assert await a.renew([kept.id]) == []
    taken, gone = await b.take_over()
    assert gone == []
    assert [(e.id, e.started) for e in taken] == [(dropped.id, "a")]
    # A's runner lost it: it may neither mark it nor write its end, and learns it renewing.
    assert await a.renew([kept.id, dropped.id]) == [dropped.id]
    assert not await a.mark_started(dropped)
    assert not await a.finish(dropped, b'{"status": "succeeded"}', b'{"result": {}}')


async def test_an_entry_that_never_began_is_taken_over_unmarked(queues: Queues) -> None:
    a, b = queues("a"), queues("b")
    job_id = await queued(a)
    assert len(await a.read(1)) == 1
    await asyncio.sleep(0.4)  # a lease and more, never renewed
    taken, _ = await b.take_over()
    assert [(e.job_id, e.started) for e in taken] == [(job_id, "")]
    assert await b.mark_started(taken[0])


async def test_the_end_and_its_result_land_together_and_the_entry_goes(
        queues: Queues) -> None:
    queue = queues("a")
    job_id = await queued(queue)
    (entry,) = await queue.read(1)
    assert await queue.mark_started(entry)
    ended = orjson.dumps({"job_id": job_id, "status": "succeeded"})
    assert await queue.finish(entry, ended, b'{"result": {"data": []}}')
    redis = queue.redis
    assert await redis.get(queue.snapshots + job_id) == ended
    assert orjson.loads(await redis.get(queue.results + job_id)) == {"result": {"data": []}}
    assert await redis.exists(queue.marks + job_id) == 0
    assert await redis.xlen(queue.stream) == 0  # deleted, not only acknowledged
    assert (await redis.xpending(queue.stream, GROUP))["pending"] == 0
