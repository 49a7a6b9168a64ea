"""A job its provider reports waiting in the upstream's own queue (``Progress`` stage
``queued``): it stays queued at 0 % with its place and ETA, nothing estimates it while it waits,
and once it runs the estimate (or the provider's own readings) take over from that moment."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from proxy.core.events import Completed, Progress
from proxy.progress import tracker as tracker_module
from proxy.progress.hub import room_for
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.tracker import JobTracker
from tests.support.progress_client import assert_well_formed
from tests.unit.progress.conftest import Process

TICK = 0.05


@pytest.fixture(autouse=True)
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", TICK)


async def watched_tracker(process: Process, expected: float) -> JobTracker:
    job = str(uuid.uuid4())
    process.rooms.add(room_for("alice", job))
    tracker = JobTracker(process.hub, job, "m", "alice", expected_seconds=expected)
    assert await tracker.open()
    tracker.start_estimating()  # as run_job does for every job
    return tracker


async def test_a_queued_job_is_not_estimated_until_it_runs(memory_process: Process) -> None:
    tracker = await watched_tracker(memory_process, expected=0.4)
    await tracker.observe(Progress(0.0, stage="queued", queue_position=2, eta_s=12.5))
    await asyncio.sleep(5 * TICK)
    await tracker.observe(Progress(0.0, stage="queued", queue_position=1, eta_s=6.0))
    await asyncio.sleep(5 * TICK)  # waited 0.5 s, longer than the whole expected run
    waiting = tracker.current()
    assert (waiting.status, waiting.percent, waiting.estimated) == ("queued", 0.0, False)
    assert (waiting.queue_position, waiting.eta_s) == (1, 6.0)

    await tracker.observe(Progress(0.0, stage="running"))  # no reading of its own: estimated
    await asyncio.sleep(6 * TICK)
    await tracker.observe(Completed())
    await tracker.stop_estimating()
    await memory_process.settled()
    events = memory_process.emitter.events(tracker.job_id)
    queued = [e for e in events if e["status"] == "queued"]
    assert [e["queue_position"] for e in queued] == [None, 2, 1]
    assert all(e["percent"] == 0 and not e["estimated"] for e in queued)
    estimates = [e for e in events if e["estimated"]]
    assert estimates and all(e["queue_position"] is None for e in estimates)
    # Counted from when it began to run (~0.05 s of 0.4), not from the job's start (0.5 s in).
    assert estimates[0]["percent"] < 60
    assert_well_formed(events)


async def test_a_measured_reading_of_nought_is_never_replaced(memory_process: Process) -> None:
    tracker = await watched_tracker(memory_process, expected=0.2)
    await tracker.observe(Progress(0.0, stage="queued", queue_position=1))
    await tracker.observe(Progress(0.0, stage="running", measured=True))  # e.g. a model loads
    await asyncio.sleep(6 * TICK)
    running = tracker.current()
    assert (running.status, running.percent, running.estimated) == ("running", 0.0, False)
    await tracker.observe(Progress(50.0, step=6, total_steps=12, stage="sampling",
                                   measured=True))
    await tracker.observe(Completed())
    await tracker.stop_estimating()
    await memory_process.settled()
    events = memory_process.emitter.events(tracker.job_id)
    assert not any(e["estimated"] for e in events)
    assert [e["percent"] for e in events] == [0, 0, 0, 50, 100]
    assert_well_formed(events)


async def test_the_measured_duration_leaves_out_the_wait(memory_process: Process) -> None:
    tracker = JobTracker(memory_process.hub, str(uuid.uuid4()), "m", "alice")
    assert await tracker.open()
    await tracker.observe(Progress(0.0, stage="queued", queue_position=1))
    await asyncio.sleep(0.3)
    await tracker.observe(Progress(0.0, stage="running", measured=True))
    await tracker.observe(Completed())
    assert memory_process.hub.latency.expected("m") < 0.2, "the run, not the wait"


def test_a_queued_job_ended_from_outside_has_no_place_in_a_queue() -> None:
    snapshot = JobSnapshot(job_id="j", seq=3, status="queued", percent=0.0, model="m",
                           created_at=0.0, updated_at=0.0, queue_position=2, eta_s=30.0)
    ended = snapshot.failed({"code": "instance_lost"})
    assert (ended.status, ended.queue_position, ended.eta_s, ended.seq) == ("failed", None,
                                                                            None, 4)
