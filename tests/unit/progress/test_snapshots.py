"""The snapshot stores, memory and Redis side by side: the id claim, reads, watch marks, and
Redis commands of concurrent callers going out in one round trip."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from proxy.core.errors import StoreUnavailable
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.snapshots import MemorySnapshotStore, SnapshotStore
from tests.unit.progress.conftest import REDIS_URL, redis_store


def snapshot(job_id: str, seq: int = 0, status: str = "queued", owner: str = "alice") \
        -> JobSnapshot:
    return JobSnapshot(job_id=job_id, seq=seq, status=status, percent=0.0, model="m",  # type: ignore[arg-type]
                       created_at=1.0, updated_at=1.0, owner=owner)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SnapshotStore]:
    if request.param == "memory":
        yield MemorySnapshotStore(retention=60, watch_ttl=1)
        return
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)
    try:
        yield redis_store(client, prefix, retention=60, watch_ttl=1)
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_create_claims_the_id_once(store: SnapshotStore) -> None:
    job = str(uuid.uuid4())
    assert (await store.create(snapshot(job), f"job:alice:{job}")).created
    assert not (await store.create(snapshot(job, owner="bob"), f"job:bob:{job}")).created
    assert (await store.get(job)) == snapshot(job)  # the first one stays
    await store.put(snapshot(job, seq=3, status="succeeded"))
    stored = await store.get(job)
    assert stored is not None and stored.seq == 3 and stored.owner == "alice"
    assert await store.get(str(uuid.uuid4())) is None


async def test_create_replacing_an_earlier_attempt(store: SnapshotStore) -> None:
    """A client-chosen id freed by its last attempt (reserved in the claim store): the new
    attempt's first snapshot replaces the old one's."""
    job = str(uuid.uuid4())
    await store.create(snapshot(job, seq=4, status="failed"), f"job:alice:{job}")
    assert (await store.create(snapshot(job, seq=5), f"job:alice:{job}", replace=True)).created
    stored = await store.get(job)
    assert stored is not None and (stored.seq, stored.status) == (5, "queued")


async def test_watch_marks_are_seen_at_create_and_expire(store: SnapshotStore) -> None:
    watched, other = str(uuid.uuid4()), str(uuid.uuid4())
    room = f"job:alice:{watched}"
    assert await store.sync([], [room], [room, f"job:alice:{other}"]) == [True, False]
    assert (await store.create(snapshot(watched), room)).watched
    assert not (await store.create(snapshot(other), f"job:alice:{other}")).watched
    # A mark is per room, so per key: bob's room for the same id is not marked.
    assert await store.sync([], [], [f"job:bob:{watched}"]) == [False]
    await asyncio.sleep(1.3)  # watch_ttl=1: nobody renewed it
    assert await store.sync([], [], [room]) == [False]


async def test_sync_writes_snapshots(store: SnapshotStore) -> None:
    jobs = [str(uuid.uuid4()) for _ in range(3)]
    assert await store.sync([snapshot(j, seq=5, status="running") for j in jobs], [], []) == []
    assert [(await store.get(j)).seq for j in jobs] == [5, 5, 5]  # type: ignore[union-attr]


async def test_redis_commands_of_concurrent_callers_share_a_round_trip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.from_url(REDIS_URL)
    store = redis_store(client, prefix, retention=60)
    sizes: list[int] = []
    send = store.batch._send

    async def counting(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        await send(batch)

    monkeypatch.setattr(store.batch, "_send", counting)
    try:
        jobs = [str(uuid.uuid4()) for _ in range(10)]
        opened = await asyncio.gather(*(store.create(snapshot(j), f"job:alice:{j}")
                                        for j in jobs))
        assert all(o.created for o in opened)
        assert sizes == [20], "ten creates (SET NX + EXISTS each): one pipeline"
        await asyncio.gather(*(store.put(snapshot(j, seq=1, status="succeeded")) for j in jobs),
                             store.get(jobs[0]))
        assert sizes == [20, 11]
        assert (await store.get(jobs[-1])).status == "succeeded"  # type: ignore[union-attr]
        assert sizes[-1] == 1
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_failed_round_trip_fails_its_callers_only_once() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    store = redis_store(client, "image-proxy-test-down", retention=60)
    try:
        results = await asyncio.gather(store.get("a"), store.put(snapshot("b")),
                                       return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert store.batch._pending == []  # nothing left waiting
        # From now on (the outage) callers are answered at once, without a round trip.
        assert not store.policy.up
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.get("c"), 0.05)
    finally:
        await store.policy.aclose()
        await client.aclose()


async def test_end_lost_fails_a_running_job_once(store: SnapshotStore) -> None:
    running, done = str(uuid.uuid4()), str(uuid.uuid4())
    await store.sync([snapshot(running, seq=4, status="running"),
                      snapshot(done, seq=9, status="succeeded")], [], [])
    error = {"message": "lost", "type": "server_error", "param": None, "code": "instance_lost"}
    ended = await store.end_lost(running, error)
    assert ended is not None and (ended.status, ended.seq, ended.error) == ("failed", 5, error)
    assert await store.get(running) == ended
    assert await store.end_lost(running, error) is None  # already ended: untouched
    assert await store.end_lost(done, error) is None
    assert (await store.get(done)).status == "succeeded"  # type: ignore[union-attr]
    assert await store.end_lost(str(uuid.uuid4()), error) is None  # unknown


async def test_an_ended_job_is_not_written_over_by_a_late_update(store: SnapshotStore) -> None:
    """An instance cut off from the fleet may store its job's running snapshot after the fleet
    ended it (before its renewal tells it): the ending stands. A new attempt under the id
    replaces it on purpose (``create(replace=True)``)."""
    job_id = str(uuid.uuid4())
    await store.sync([snapshot(job_id, seq=4, status="running")], [], [])
    error = {"message": "lost", "type": "server_error", "param": None, "code": "instance_lost"}
    ended = await store.end_lost(job_id, error)
    await store.sync([snapshot(job_id, seq=5, status="running")], [], [])
    await store.sync([snapshot(job_id, seq=6, status="succeeded")], [], [])
    assert await store.get(job_id) == ended
    again = snapshot(job_id, seq=0, status="queued")
    assert (await store.create(again, "room", replace=True)).created
    await store.sync([snapshot(job_id, seq=1, status="running")], [], [])
    assert (await store.get(job_id)).seq == 1  # type: ignore[union-attr]
