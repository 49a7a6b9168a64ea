"""Hubs of several processes sharing Redis: "watched" is known across processes (a mark read when
the job opens, then at every sync), reads elsewhere are at most one sync behind and never miss
the end, an id is taken once for all, and keys stay apart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from proxy.core.events import Completed, Progress
from proxy.progress.hub import room_for
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.tracker import JobTracker
from tests.support.progress_client import assert_well_formed
from tests.unit.progress.conftest import Process

Processes = Callable[[], Process]


async def test_a_subscriber_elsewhere_before_the_job_opens(redis_processes: Processes) -> None:
    owner, viewer = redis_processes(), redis_processes()
    job = str(uuid.uuid4())
    viewer.rooms.add(room_for("alice", job))
    await viewer.hub.watch("alice", job)  # subscribe on the viewer's process, then POST
    tracker = JobTracker(owner.hub, job, "m", "alice")
    assert await tracker.open()
    assert tracker.watched
    for step in range(1, 4):
        await tracker.observe(Progress(25.0 * step, step=step, total_steps=4))
    await tracker.observe(Completed())
    await owner.settled()
    # The owner emits (its Socket.IO manager publishes to every process); every update.
    events = owner.emitter.events(job)
    assert [e["seq"] for e in events] == [0, 1, 2, 3, 4]
    assert_well_formed(events)


async def test_a_late_subscriber_elsewhere_is_noticed_at_the_next_sync(
        redis_processes: Processes) -> None:
    owner, viewer = redis_processes(), redis_processes()
    owner.hub.sync_interval = 3600  # synced by hand below
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.hub, job, "m", "alice")
    await tracker.open()
    await tracker.observe(Progress(10.0, step=1, total_steps=10))
    await owner.hub.sync()
    viewer.rooms.add(room_for("alice", job))
    await viewer.hub.watch("alice", job)
    ack = await viewer.hub.get(job, "alice")  # from the store: as of the owner's last sync
    assert ack is not None and ack.seq == 1 and ack.status == "running"
    await tracker.observe(Progress(20.0, step=2, total_steps=10))
    assert not tracker.watched  # not yet known on the owner's process
    await owner.hub.sync()
    assert tracker.watched
    await tracker.observe(Progress(30.0, step=3, total_steps=10))
    await tracker.observe(Completed())
    await owner.settled()
    events = owner.emitter.events(job)
    assert [e["seq"] for e in events] == [3, 4]
    assert_well_formed([ack.to_wire(), *events])


async def test_reads_elsewhere_lag_by_one_sync_at_most_and_never_miss_the_end(
        redis_processes: Processes) -> None:
    owner, reader = redis_processes(), redis_processes()
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.hub, job, "m", "alice")
    await tracker.open()
    assert (await reader.hub.get(job, "alice")).status == "queued"  # type: ignore[union-attr]
    await tracker.observe(Progress(40.0, step=2, total_steps=5))
    fresh = await owner.hub.get(job, "alice")  # on the owning process: the tracker itself
    assert fresh is not None and fresh.percent == 40.0
    await asyncio.sleep(0.2)
    seen = await reader.hub.get(job, "alice")
    assert seen is not None and seen.percent == 40.0 and seen.seq == fresh.seq
    await tracker.observe(Completed())
    final = await reader.hub.get(job, "alice")  # no sync needed: written before it ended
    assert final is not None and final.status == "succeeded" and final.percent == 100
    assert await reader.hub.get(job, "bob") is None


async def test_an_id_is_taken_once_across_processes(redis_processes: Processes) -> None:
    a, b = redis_processes(), redis_processes()
    job = str(uuid.uuid4())
    assert await JobTracker(a.hub, job, "m", "alice").open()
    assert not await JobTracker(b.hub, job, "m", "alice").open()
    assert not await JobTracker(b.hub, job, "m", "bob").open()


async def test_another_keys_mark_does_not_make_a_job_watched(redis_processes: Processes) -> None:
    owner, viewer = redis_processes(), redis_processes()
    job = str(uuid.uuid4())
    viewer.rooms.add(room_for("bob", job))
    await viewer.hub.watch("bob", job)
    tracker = JobTracker(owner.hub, job, "m", "alice")
    await tracker.open()
    await tracker.observe(Progress(50.0, step=1, total_steps=2))
    await asyncio.sleep(0.2)
    await tracker.observe(Completed())
    await owner.settled()
    assert not tracker.watched and owner.emitter.sent == []


async def test_an_unwatched_job_is_written_at_open_and_end_only(
        redis_processes: Processes) -> None:
    owner = redis_processes()
    writes: list[str] = []
    store = owner.hub.store
    put, sync = store.put, store.sync

    async def counted_put(snapshot: JobSnapshot) -> None:
        writes.append(snapshot.status)
        await put(snapshot)

    async def counted_sync(snapshots, mark, check):  # type: ignore[no-untyped-def]
        writes.extend(s.status for s in snapshots)
        return await sync(snapshots, mark, check)

    store.put, store.sync = counted_put, counted_sync  # type: ignore[method-assign]
    trackers = [JobTracker(owner.hub, str(uuid.uuid4()), "m", "alice") for _ in range(20)]
    assert all(await asyncio.gather(*(t.open() for t in trackers)))
    for tracker in trackers:
        for step in range(1, 5):
            await tracker.observe(Progress(20.0 * step, step=step, total_steps=5))
        await tracker.observe(Completed())
    await owner.settled()
    assert writes == ["succeeded"] * 20 and owner.emitter.sent == []


async def test_the_end_is_never_overwritten_by_a_sync_in_flight(
        redis_processes: Processes) -> None:
    owner, reader = redis_processes(), redis_processes()
    store = owner.hub.store
    sync = store.sync
    release = asyncio.Event()

    async def slow_sync(snapshots, mark, check):  # type: ignore[no-untyped-def]
        await release.wait()
        return await sync(snapshots, mark, check)

    store.sync = slow_sync  # type: ignore[method-assign]
    owner.hub.sync_interval = 3600  # only the sync below runs
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.hub, job, "m", "alice")
    await tracker.open()
    await tracker.observe(Progress(50.0, step=1, total_steps=2))
    syncing = asyncio.create_task(owner.hub.sync())  # takes the running snapshot
    await asyncio.sleep(0.01)
    ending = asyncio.create_task(tracker.observe(Completed()))
    await asyncio.sleep(0.05)
    assert not ending.done(), "the end waits for the older write in flight"
    release.set()
    await asyncio.gather(syncing, ending)
    final = await reader.hub.get(job, "alice")
    assert final is not None and final.status == "succeeded"


async def test_the_sync_loop_stops_when_nothing_runs_or_is_watched(
        redis_processes: Processes) -> None:
    owner = redis_processes()
    tracker = JobTracker(owner.hub, str(uuid.uuid4()), "m", "alice")
    await tracker.open()
    assert owner.hub._sync_task is not None
    await tracker.observe(Completed())
    await asyncio.sleep(0.2)
    assert owner.hub._sync_task is None


async def test_a_running_job_is_rewritten_about_once_per_refresh(
        redis_processes: Processes) -> None:
    owner, reader = redis_processes(), redis_processes()
    owner.hub.refresh_seconds = 0.3
    writes: list[int] = []
    store = owner.hub.store
    sync = store.sync

    async def counted_sync(snapshots, mark, check):  # type: ignore[no-untyped-def]
        writes.extend(s.seq for s in snapshots)
        return await sync(snapshots, mark, check)

    store.sync = counted_sync  # type: ignore[method-assign]
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.hub, job, "m", "alice")
    await tracker.open()
    for step in range(1, 41):  # 40 updates over ~0.8 s, syncs every 0.05 s
        await tracker.observe(Progress(2.0 * step, step=step, total_steps=50))
        await asyncio.sleep(0.02)
    assert 2 <= len(writes) <= 4, writes
    await asyncio.sleep(0.4)  # the last change is written within a refresh (+ one sync)
    seen = await reader.hub.get(job, "alice")
    assert seen is not None and seen.seq == 40
    await tracker.observe(Completed())


async def test_an_id_made_here_for_its_own_connection_is_not_claimed_first(
        redis_processes: Processes) -> None:
    """No opening write for a gateway-minted id of an attached job: stored by the next sync
    if it runs that long, and at its end."""
    owner, viewer = redis_processes(), redis_processes()
    owner.hub.sync_interval = 3600  # synced by hand below
    job = str(uuid.uuid4())
    tracker = JobTracker(owner.hub, job, "m", "alice")
    assert await tracker.open(claim=False)
    assert await viewer.hub.get(job, "alice") is None  # nothing stored yet
    assert (await owner.hub.get(job, "alice")).status == "queued"  # the owner knows it
    await tracker.observe(Progress(50.0, step=1, total_steps=2))
    await owner.hub.sync()
    assert (await viewer.hub.get(job, "alice")).status == "running"
    await tracker.observe(Completed())
    assert (await viewer.hub.get(job, "alice")).status == "succeeded"
