"""Ended jobs' snapshots in one process: kept serialised (not as the objects that were put) until
their retention ends, read back whole."""

from __future__ import annotations

import time
import uuid

from proxy.progress import snapshots as snapshots_module
from proxy.progress.ended import EndedSnapshots
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.snapshots import MemorySnapshotStore


def ended(job_id: str, status: str = "failed") -> JobSnapshot:
    return JobSnapshot(job_id=job_id, seq=9, status=status, percent=42.5,  # type: ignore[arg-type]
                       model="m", created_at=1.25, updated_at=2.5, step=3, total_steps=7,
                       stage="rendering", message="late", estimated=True,
                       error={"message": "no", "type": "server_error", "param": None,
                              "code": "upstream_error"}, owner="alice")


def test_a_snapshot_reads_back_whole_until_it_expires() -> None:
    store = EndedSnapshots()
    job = str(uuid.uuid4())
    store.put([(110.0, ended(job))], now=100.0)
    assert store.get(job, now=109.9) == ended(job)
    assert store.get(job, now=110.0) is None
    assert store.get(str(uuid.uuid4()), now=100.0) is None
    store.clear()
    assert store.get(job, now=100.0) is None


def test_a_later_put_replaces_and_expired_rows_are_swept() -> None:
    store = EndedSnapshots()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    store.put([(10.0, ended(first))], now=0.0)
    store.put([(20.0, ended(first, "succeeded"))], now=0.0)
    assert store.get(first, now=15.0) == ended(first, "succeeded")
    store.put([(100.0, ended(second))], now=25.0)  # a sweep is due: first's row goes
    rows = store._cursor.execute("SELECT job_id FROM ended").fetchall()
    assert rows == [(second,)]
    store.discard(second)
    assert store.get(second, now=26.0) is None


async def test_the_memory_store_settles_ended_jobs_out_of_their_objects() -> None:
    store = MemorySnapshotStore(retention=60)
    job = str(uuid.uuid4())
    running = JobSnapshot(job_id=job, seq=1, status="running", percent=5.0, model="m",
                          created_at=time.time(), updated_at=time.time(), owner="alice")
    await store.create(running, f"job:alice:{job}")
    assert await store.get(job) is running
    final = ended(job, "succeeded")
    await store.put(final)
    assert await store.get(job) is final
    store.settle()  # as an idle pass does
    read = await store.get(job)
    assert read == final and read is not final
    assert store._running == {} and store._ended_here == {}
    assert not (await store.create(running, f"job:alice:{job}")).created, "the id stays taken"
    await store.aclose()
    assert await store.get(job) is None


async def test_many_ended_jobs_settle_without_an_idle_pass(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(snapshots_module, "SETTLE_AT", 3)
    store = MemorySnapshotStore(retention=60)
    jobs = [str(uuid.uuid4()) for _ in range(4)]
    for job in jobs:
        await store.put(ended(job))
    assert list(store._ended_here) == [jobs[3]]
    assert [await store.get(job) for job in jobs] == [ended(job) for job in jobs]
    await store.aclose()
