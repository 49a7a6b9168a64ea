"""A job's tracker and the hub in one process: nothing is built or sent for a job nobody watches;
a watched job's updates reach its room, in order, with the guarantees watchers rely on; estimates
only while watched (and in reads); the fan-out never holds up the job."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Failed, PartialImage, Progress
from proxy.progress import tracker as tracker_module
from proxy.progress.hub import room_for
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.snapshots import MemorySnapshotStore
from proxy.progress.tracker import JobTracker
from tests.support.progress_client import assert_well_formed
from tests.unit.progress.conftest import Process


class CountingStore(MemorySnapshotStore):
    def __init__(self) -> None:
        super().__init__(retention=60)
        self.writes: list[JobSnapshot] = []

    async def create(self, snapshot, room):  # type: ignore[no-untyped-def]
        self.writes.append(snapshot)
        return await super().create(snapshot, room)

    async def put(self, snapshot: JobSnapshot) -> None:
        self.writes.append(snapshot)
        await super().put(snapshot)


async def run_steps(tracker: JobTracker, steps: int = 5) -> None:
    tracker.start_estimating()
    await tracker.observe(Progress(0.0, stage="upstream_accepted"))
    for i in range(1, steps + 1):
        await tracker.observe(Progress(100 * i / (steps + 1), step=i, total_steps=steps + 1))
        await tracker.observe(PartialImage(0, i - 1, "AAAA"))
    await tracker.observe(Completed())
    await tracker.stop_estimating()


async def test_a_job_nobody_watches_sends_nothing_and_is_written_twice() -> None:
    store = CountingStore()
    process = Process(store)
    tracker = JobTracker(process.hub, str(uuid.uuid4()), "m", "alice")
    assert await tracker.open()
    await run_steps(tracker)
    await process.settled()
    assert process.emitter.sent == []
    assert [s.status for s in store.writes] == ["queued", "succeeded"]
    assert tracker._ticker is None, "no estimate ticker for an unwatched job"
    final = await process.hub.get(tracker.job_id, "alice")
    assert final is not None and final.status == "succeeded" and final.seq == 7


async def test_a_watched_job_sends_every_update_in_order(memory_process: Process) -> None:
    job = str(uuid.uuid4())
    memory_process.rooms.add(room_for("alice", job))  # subscribed before the job exists
    tracker = JobTracker(memory_process.hub, job, "m", "alice")
    assert await tracker.open()
    await run_steps(tracker)
    await memory_process.settled()
    events = memory_process.emitter.events(job)
    assert [e["seq"] for e in events] == list(range(8))
    assert {room for room, _ in memory_process.emitter.sent} == {room_for("alice", job)}
    assert events[0]["status"] == "queued" and events[-1]["status"] == "succeeded"
    assert "owner" not in events[0]
    assert_well_formed(events)


async def test_a_late_subscriber_starts_events_without_a_repeat(memory_process: Process) -> None:
    hub, job = memory_process.hub, str(uuid.uuid4())
    tracker = JobTracker(hub, job, "m", "alice")
    await tracker.open()
    tracker.start_estimating()
    await tracker.observe(Progress(10.0, step=1, total_steps=10))
    # The namespace: enter the room, tell the hub, answer with the current snapshot.
    memory_process.rooms.add(room_for("alice", job))
    await hub.watch("alice", job)
    ack = await hub.get(job, "alice")
    for step in range(2, 11):
        await tracker.observe(Progress(10.0 * step, step=step, total_steps=10))
    await tracker.observe(Completed())
    await memory_process.settled()
    events = memory_process.emitter.events(job)
    assert ack is not None and ack.seq == 1 and events[0]["seq"] == 2
    assert_well_formed([ack.to_wire(), *events])


async def test_the_last_watcher_leaving_stops_the_events(memory_process: Process) -> None:
    job = str(uuid.uuid4())
    room = room_for("alice", job)
    memory_process.rooms.add(room)
    tracker = JobTracker(memory_process.hub, job, "m", "alice")
    await tracker.open()
    await tracker.observe(Progress(10.0, step=1))
    memory_process.rooms.discard(room)
    await tracker.observe(Progress(20.0, step=2))
    await tracker.observe(Progress(30.0, step=3))
    await memory_process.settled()
    assert [e["seq"] for e in memory_process.emitter.events(job)] == [0, 1]
    assert not tracker.watched


async def test_another_keys_subscriber_hears_nothing(memory_process: Process) -> None:
    job = str(uuid.uuid4())
    memory_process.rooms.add(room_for("bob", job))  # bob waits for the same id
    tracker = JobTracker(memory_process.hub, job, "m", "alice")
    await tracker.open()
    await memory_process.hub.watch("bob", job)
    await run_steps(tracker)
    await memory_process.settled()
    assert memory_process.emitter.sent == []
    assert await memory_process.hub.get(job, "bob") is None
    assert (await memory_process.hub.get(job, "alice")).status == "succeeded"  # type: ignore[union-attr]


async def test_a_taken_id_is_refused(memory_process: Process) -> None:
    job = str(uuid.uuid4())
    assert await JobTracker(memory_process.hub, job, "m", "alice").open()
    assert not await JobTracker(memory_process.hub, job, "m", "bob").open()


@pytest.fixture
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 0.05)
    return 0.05


async def test_estimates_only_while_watched(memory_process: Process, fast_ticks: float) -> None:
    hub, job = memory_process.hub, str(uuid.uuid4())
    tracker = JobTracker(hub, job, "m", "alice", expected_seconds=2.0)
    await tracker.open()
    tracker.start_estimating()  # a backend with no signal: only estimates would show progress
    await asyncio.sleep(4 * fast_ticks)
    assert tracker.snapshot.seq == 0 and tracker._ticker is None, "nobody watches: no ticks"
    # A read computes the estimate itself (recorded, not sent).
    read = await hub.get(job, "alice")
    assert read is not None and read.estimated and read.status == "running"
    assert 0 < read.percent < 100 and read.seq == 1 and memory_process.emitter.sent == []
    memory_process.rooms.add(room_for("alice", job))
    await hub.watch("alice", job)
    await asyncio.sleep(4 * fast_ticks)
    await tracker.observe(Completed())
    await tracker.stop_estimating()
    await memory_process.settled()
    events = memory_process.emitter.events(job)
    assert len([e for e in events if e["estimated"]]) >= 2
    assert events[-1]["status"] == "succeeded" and not events[-1]["estimated"]
    assert_well_formed([read.to_wire(), *events])


async def test_a_real_signal_stops_the_estimates(memory_process: Process,
                                                 fast_ticks: float) -> None:
    job = str(uuid.uuid4())
    memory_process.rooms.add(room_for("alice", job))
    tracker = JobTracker(memory_process.hub, job, "m", "alice", expected_seconds=2.0)
    await tracker.open()
    tracker.start_estimating()
    await asyncio.sleep(3 * fast_ticks)
    await tracker.observe(Progress(60.0, step=3, total_steps=5))
    await asyncio.sleep(3 * fast_ticks)
    await tracker.observe(Failed(GatewayError(502, "upstream broke", code="upstream_error")))
    await tracker.stop_estimating()
    await memory_process.settled()
    events = memory_process.emitter.events(job)
    signal = next(i for i, e in enumerate(events) if e["step"] == 3)
    assert not any(e["estimated"] for e in events[signal:])
    assert events[-1]["status"] == "failed" and events[-1]["error"]["code"] == "upstream_error"
    assert_well_formed(events)


async def test_a_slow_fan_out_does_not_hold_up_the_job() -> None:
    process = Process(MemorySnapshotStore(retention=60))
    process.emitter.delay = 0.05  # every emit takes 50 ms (a room of thousands)
    job = str(uuid.uuid4())
    process.rooms.add(room_for("alice", job))
    tracker = JobTracker(process.hub, job, "m", "alice")
    await tracker.open()
    started = time.perf_counter()
    await run_steps(tracker, steps=10)
    assert time.perf_counter() - started < 0.05, "the job only queued its updates"
    await process.settled()
    events = process.emitter.events(job)
    assert [e["seq"] for e in events] == list(range(len(events))) and len(events) == 13
    assert_well_formed(events)


async def test_an_end_written_with_its_result_shows_only_once_it_is_stored() -> None:
    """A durable job's end goes to the store together with its result (``write``). Until that
    write is done, a read here sees the job as it was, never ended without its result (the
    hub may first wait for an older snapshot's write: the window the fleet's polls hit)."""
    process = Process(MemorySnapshotStore(retention=60))
    tracker = JobTracker(process.hub, str(uuid.uuid4()), "m", "alice")
    assert await tracker.open()
    await tracker.observe(Progress(50.0, step=1, total_steps=2))
    tracker.defer_end = True
    await tracker.observe(Completed())
    stored = asyncio.Event()
    release = asyncio.Event()

    async def write(snapshot: JobSnapshot) -> bool:
        await release.wait()  # the end and its result on their way to the store
        await process.hub.store.put(snapshot)
        stored.set()
        return True

    ending = asyncio.create_task(tracker.conclude(write=write))
    await asyncio.sleep(0.01)
    seen = await process.hub.get(tracker.job_id, "alice")
    assert seen is not None and seen.status == "running" and not seen.terminal
    release.set()
    await ending
    assert stored.is_set()
    final = await process.hub.get(tracker.job_id, "alice")
    assert final is not None and final.status == "succeeded"
