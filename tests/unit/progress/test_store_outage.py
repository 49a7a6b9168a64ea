"""Progress while the shared store is away (a redis-server of the test's own): a job that ends
meanwhile neither fails nor waits, its last snapshot is read from its process and written once
Redis is back; running snapshots and watch marks are written again to a Redis that came back
empty. And the reaper: a lapsed lease's job ends ``failed``/``instance_lost`` for its watchers,
once, and never right after an outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from proxy.core.events import Completed, Progress
from proxy.fleet.batch import Batch
from proxy.fleet.client import connect
from proxy.fleet.leases_redis import RedisLeases
from proxy.fleet.policy import StorePolicy
from proxy.progress.hub import room_for
from proxy.progress.reaper import Reaper
from proxy.progress.snapshots import RedisSnapshotStore
from proxy.progress.tracker import JobTracker
from tests.support.redis_server import RedisServer, redis_server
from tests.unit.progress.conftest import Process


class Node:
    """One process of a fleet: its policy, its snapshot store and hub, its leases."""

    def __init__(self, client: Redis, lease: float = 10.0) -> None:
        self.policy = StorePolicy(client.ping, timeout=0.3, probe_every=0.1)
        batch = Batch(client)
        self.process = Process(RedisSnapshotStore(batch, self.policy, "p", retention=60,
                                                  watch_ttl=3))
        self.leases = RedisLeases(batch, self.policy, "p", lease_seconds=lease,
                                  instance=f"node-{id(self)}", retention=60)
        self.reaper = Reaper(self.leases, self.process.hub.store, self.process.hub.outbox,
                             self.policy)

    async def aclose(self) -> None:
        await self.reaper.aclose()
        await self.leases.aclose()
        await self.process.hub.aclose()
        await self.policy.aclose()


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[RedisServer, list[Node]]]:
    with redis_server() as server:
        client = connect(server.url, 0.3)
        nodes: list[Node] = []
        try:
            yield server, nodes
        finally:
            for node in nodes:
                await node.aclose()
            await client.aclose()


def node(fleet: tuple[RedisServer, list[Node]], lease: float = 10.0) -> Node:
    server, nodes = fleet
    nodes.append(Node(connect(server.url, 0.3), lease))
    return nodes[-1]


async def eventually(check, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout
        await asyncio.sleep(0.05)


async def test_a_job_ending_during_an_outage_is_written_once_redis_is_back(
        fleet: tuple[RedisServer, list[Node]]) -> None:
    server = fleet[0]
    owner, reader = node(fleet), node(fleet)
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.process.hub, job, "m", "alice")
    assert await tracker.open()
    await tracker.observe(Progress(50.0, step=1, total_steps=2))
    server.kill()
    started = time.monotonic()
    await tracker.observe(Completed())  # neither raises nor waits for Redis
    assert time.monotonic() - started < 1
    kept = await owner.process.hub.get(job, "alice")  # read here, from what it kept
    assert kept is not None and kept.status == "succeeded"
    server.start()  # empty

    async def written() -> bool:
        snapshot = await reader.process.hub.store.get(job) if reader.policy.up else None
        return snapshot is not None and snapshot.status == "succeeded"

    await eventually(written)


async def test_a_redis_that_comes_back_empty_gets_running_jobs_and_marks_again(
        fleet: tuple[RedisServer, list[Node]]) -> None:
    server = fleet[0]
    owner, viewer = node(fleet), node(fleet)
    owner.process.hub.sync_interval = viewer.process.hub.sync_interval = 0.05
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.process.hub, job, "m", "alice")
    assert await tracker.open()
    await tracker.observe(Progress(30.0, step=3, total_steps=10))
    room = room_for("alice", job)
    viewer.process.rooms.add(room)
    await viewer.process.hub.watch("alice", job)
    server.kill()
    await asyncio.sleep(0.3)
    server.start()

    async def rewritten() -> bool:
        stored = await viewer.process.hub.store.get(job) if viewer.policy.up else None
        return stored is not None and stored.percent == 30.0

    async def marked() -> bool:  # the viewer's watch mark is set again
        return viewer.policy.up and await viewer.process.hub.store.sync([], [], [room]) == [True]

    await eventually(rewritten)
    await eventually(marked)
    await tracker.observe(Completed())


async def test_the_reaper_ends_a_lapsed_job_for_its_watchers_once(
        fleet: tuple[RedisServer, list[Node]]) -> None:
    dying, living = node(fleet, lease=0.3), node(fleet, lease=0.3)
    dying.process.hub.refresh_seconds = 3600  # no periodic rewrites: only what publishing stores
    job = str(uuid.uuid4())
    assert await dying.leases.admit(job, "alice", 1) is not None
    tracker = JobTracker(dying.process.hub, job, "m", "alice")
    assert await tracker.open()
    await tracker.observe(Progress(40.0, step=2, total_steps=5))
    dying.process.rooms.add(tracker.room)  # watched: each update is stored as it is published
    tracker.watch()
    await tracker.observe(Progress(60.0, step=3, total_steps=5))
    await dying.process.settled()
    await dying.leases.aclose()  # it stops renewing: as if killed
    await asyncio.sleep(0.4)
    assert await living.reaper.sweep() == 0, "not right after start: it waits a lease first"
    await asyncio.sleep(living.reaper.grace)
    assert await living.reaper.sweep() == 1
    assert await living.reaper.sweep() == 0
    await living.process.settled()
    (room, event), = living.process.emitter.sent
    assert room == tracker.room and event["status"] == "failed"
    assert event["error"]["code"] == "instance_lost" and event["percent"] == 60.0
    published = dying.process.emitter.events(job)
    assert event["seq"] > published[-1]["seq"], "after every update its watchers had"
    assert await living.leases.admit(str(uuid.uuid4()), "alice", 1) is not None
