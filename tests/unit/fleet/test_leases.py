"""Leases and concurrency slots, the memory twin and the Redis scripts side by side: slots are
per-job entries that free themselves when their lease lapses; renewal keeps them; a lapsed
lease is reaped exactly once and fences its old owner."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from proxy.fleet.leases import JobLease
from proxy.fleet.leases_redis import RedisLeases
from tests.unit.fleet.conftest import REDIS_URL, Tables


def job() -> str:
    return str(uuid.uuid4())


async def test_a_key_s_slots_hold_its_limit_and_come_back(tables: Tables) -> None:
    table = tables()
    first = await table.admit(job(), "alice", 2)
    second = await table.admit(job(), "alice", 2)
    assert first is not None and second is not None
    assert await table.admit(job(), "alice", 2) is None  # both taken
    assert await table.admit(job(), "bob", 2) is not None  # another key's slots are its own
    assert await table.admit(job(), "alice", None) is not None  # a job without a limit
    await first.release()
    await first.release()  # once only: the second release gives nothing back
    third = await table.admit(job(), "alice", 2)
    assert third is not None
    assert await table.admit(job(), "alice", 2) is None


async def test_a_slot_frees_itself_when_its_lease_lapses(tables: Tables) -> None:
    table = tables(lease_seconds=0.4)
    held = await table.admit(job(), "alice", 1)
    assert held is not None
    await table.aclose()  # its renewal stops: as if its instance died
    assert await table.admit(job(), "alice", 1) is None
    await asyncio.sleep(0.5)
    assert await table.admit(job(), "alice", 1) is not None


async def test_renewal_keeps_a_lease_and_its_slot(tables: Tables) -> None:
    # A lease long enough that a loaded machine's stalls do not lapse it between renewals.
    table = tables(lease_seconds=1.2)
    held = await table.admit(job(), "alice", 1)
    assert held is not None
    for _ in range(4):  # 2.4 s: twice the lease, renewed every third of it
        await asyncio.sleep(0.6)
        assert await table.admit(job(), "alice", 1) is None
        assert await table.reap() == []
    await held.release()
    assert await table.admit(job(), "alice", 1) is not None


async def test_a_lapsed_lease_is_reaped_once_and_its_owner_learns_it(tables: Tables) -> None:
    owner = tables(lease_seconds=0.3, instance="dies")
    reaper = tables(lease_seconds=0.3, instance="lives")
    lost_job, other = job(), job()
    held = await owner.admit(lost_job, "alice", 1)
    kept = await owner.admit(other, "bob", None)
    assert held is not None and kept is not None
    await owner.aclose()  # stops renewing
    assert await reaper.reap() == []  # not lapsed yet
    await asyncio.sleep(0.4)
    await kept.release()  # ended in time: never reaped
    lapsed = await reaper.reap()
    assert [(x.job_id, x.owner, x.instance) for x in lapsed] == [(lost_job, "alice", "dies")]
    assert await reaper.reap() == [] and await owner.reap() == []  # claimed once
    assert await reaper.admit(job(), "alice", 1) is not None  # its slot is free
    # The owner was only cut off: its next renewal learns the job was ended.
    assert [lease.job_id for lease in await owner.renew()] == [lost_job]
    assert not held.held and held.token not in owner.held


async def test_adopted_leases_are_recorded_by_the_next_renewal(tables: Tables) -> None:
    table = tables()
    adopted = table.adopt(job(), "alice", 1)  # admitted while the store was away
    assert isinstance(adopted, JobLease)
    other = await table.admit(job(), "alice", 1)  # the store has not heard of it yet
    assert other is not None
    assert await table.renew() == []  # now it has: both run, both hold a slot
    await other.release()
    assert await table.admit(job(), "alice", 1) is None  # the adopted job's slot counts
    await adopted.release()
    assert await table.admit(job(), "alice", 1) is not None


async def test_redis_renewal_is_one_round_trip_for_all_leases(redis_tables: Tables,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    table = redis_tables()
    assert isinstance(table, RedisLeases)
    await asyncio.gather(*(table.admit(job(), f"key-{i % 3}", 1000) for i in range(1200)))
    assert len(table.held) == 1200
    sent: list[int] = []
    send = table.batch._send

    async def counting(batch):  # type: ignore[no-untyped-def]
        sent.append(len(batch))
        await send(batch)

    monkeypatch.setattr(table.batch, "_send", counting)
    assert await table.renew() == []
    assert sent == [3], "1,200 leases: three scripts of at most 500, in one pipeline"


async def test_redis_renewal_records_leases_again_after_redis_lost_them(
        redis_tables: Tables) -> None:
    table = redis_tables()
    assert isinstance(table, RedisLeases)
    held = await table.admit(job(), "alice", 1)
    assert held is not None
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.delete(table.deadlines, table.infos, table.slots + "alice")  # as a restart
        assert await table.admit(job(), "alice", 1) is not None  # forgotten: wrongly free
        assert await table.renew() == []  # not reaped, just lost: recorded again
        assert await client.zscore(table.deadlines, held.token) is not None
        assert await client.zscore(table.slots + "alice", held.token) is not None
        # A slot set never lives longer than a lease after its last renewal.
        assert 0 < await client.pttl(table.slots + "alice") <= table.lease_ms
    finally:
        await client.aclose()


async def test_a_lease_without_a_slot_reaches_the_store_only_once_its_job_can_be_seen(
        tables: Tables) -> None:
    owner = tables(lease_seconds=0.3, instance="dies")
    reaper = tables(lease_seconds=0.3, instance="lives")
    short, seen, long = job(), job(), job()
    ended = await owner.admit(short, "bob", None)
    assert ended is not None and not ended.recorded
    await ended.release()  # over before anyone could see it: the store never heard of it
    watched = await owner.admit(seen, "bob", None)
    running = await owner.admit(long, "bob", None)
    assert watched is not None and running is not None
    await owner.record([seen])  # its snapshot is about to be stored
    assert watched.recorded and not running.recorded
    await owner.aclose()  # the instance stops renewing, as if killed
    await asyncio.sleep(0.4)
    # Only the job the fleet could see is ended by it; the other was never stored anywhere.
    assert [x.job_id for x in await reaper.reap()] == [seen]
    assert await owner.renew() == [watched]  # the owner, cut off, learns it; records the other
    assert running.recorded
    await asyncio.sleep(0.4)
    assert [x.job_id for x in await reaper.reap()] == [long]


async def test_a_lease_recorded_while_its_job_ends_is_taken_back(redis_tables: Tables) -> None:
    table = redis_tables(lease_seconds=0.3)
    assert isinstance(table, RedisLeases)
    lease = await table.admit(job(), "bob", None)
    assert lease is not None
    renewing = asyncio.ensure_future(table.renew())
    await asyncio.sleep(0)  # the renewal is on its way with the lease in it
    await lease.release()
    await renewing
    await asyncio.sleep(0.4)
    assert await table.reap() == []  # released after it was recorded: nothing left to lapse
