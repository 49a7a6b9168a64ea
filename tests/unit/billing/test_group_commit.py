"""Group commit in the usage ledger: records share transactions and event-loop wake-ups, and
none is acknowledged before it is committed (and survives the process being killed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.billing import FILENAME, LedgerClosed, SQLiteLedger, UsageRecord
from proxy.billing import ledger_sqlite as ledger_module
from proxy.billing.ledger import LedgerStats
from proxy.billing.ledger_sqlite import MAX_BATCH, ROWS_PER_STATEMENT
from proxy.billing.schema import COLUMNS
from tests.unit.billing.records import T0, rec


def job_ids_on_disk(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT job_id FROM usage")}
    finally:
        conn.close()


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock from another connection: the writer's next commit waits
    (in its busy handler) until the block ends or the holder commits, so whatever is queued
    meanwhile piles up."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield blocker
        if blocker.in_transaction:
            blocker.execute("COMMIT")
    finally:
        blocker.close()


@contextmanager
def counting_threadsafe_calls(loop: asyncio.AbstractEventLoop) -> Iterator[list[int]]:
    """Count ``loop.call_soon_threadsafe``: every wake-up another thread asks of the loop."""
    calls = [0]
    original: Callable[..., Any] = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        yield calls
    finally:
        del loop.call_soon_threadsafe


async def test_concurrent_records_share_a_few_commits_and_wake_ups(
        ledger: SQLiteLedger) -> None:
    n = 1000
    with counting_threadsafe_calls(asyncio.get_running_loop()) as wakeups:
        with write_lock_held(ledger.path) as blocker:
            writing = asyncio.gather(*(ledger.record(rec(i)) for i in range(n)))
            await asyncio.sleep(0.1)  # every record queued behind the blocked first commit
            assert not writing.done()
            blocker.execute("COMMIT")
            await asyncio.wait_for(writing, 10)
        assert wakeups[0] == ledger.stats.wakeups
    stats = ledger.stats
    # The first batch took what was queued when the writer woke (at least one record); the
    # rest waited together and went in full batches.
    assert stats.records == n and stats.failed == 0
    assert stats.commits <= 2 + (n - 1) // MAX_BATCH
    assert stats.wakeups == stats.commits  # one wake-up per batch, not one per record
    assert len(job_ids_on_disk(ledger.path)) == n


async def test_a_lone_record_is_committed_alone_and_at_once(ledger: SQLiteLedger) -> None:
    """Nothing waits for company: one record at a time is one commit and one wake-up each
    (spaced by the commit interval at most)."""
    before = ledger.stats
    took = []
    for i in range(20):
        started = time.perf_counter()
        await ledger.record(rec(i))
        took.append(time.perf_counter() - started)
    after = ledger.stats
    assert after.records - before.records == 20
    assert after.commits - before.commits == 20
    assert after.wakeups - before.wakeups == 20
    assert sorted(took)[10] < 0.5  # an fsync, not a timer


async def test_records_within_the_commit_interval_share_its_commit(tmp_path: Path) -> None:
    """Under load, at most one commit begins per interval: what arrives within it waits for its
    end and shares one commit; closing the ledger does not wait for the interval."""
    async with SQLiteLedger(tmp_path / "data", commit_interval=1.0) as ledger:
        await ledger.record(rec(0))  # after a quiet spell: committed at once
        before = ledger.stats
        waiting = []
        for i in range(1, 6):
            waiting.append(ledger.record_nowait(rec(i)))
            await asyncio.sleep(0.01)
        assert not any(future.done() for future in waiting)
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        after = ledger.stats
        assert (after.commits - before.commits, after.records - before.records) == (1, 5)
        more = [ledger.record_nowait(rec(i)) for i in range(6, 9)]
    # Closed within the next interval: the queued records were written, not dropped.
    assert all(future.done() and future.exception() is None for future in more)
    assert job_ids_on_disk(ledger.path) == {rec(i).job_id for i in range(9)}


def switches_of(thread: Any) -> int:
    """How many times ``thread`` gave up its core of its own accord (blocked, slept) so far:
    each is a wake-up later, and the GIL taken from the event loop."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("voluntary_ctxt_switches")))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
async def test_records_arriving_within_an_interval_do_not_wake_the_writer(
        tmp_path: Path) -> None:
    """Records queued while the writer waits out the commit interval must not wake it one by
    one: each wake-up is a context switch and a GIL hand-off that the busy event loop pays for
    (with a wait on the queue it was one per record, a fifth of a small request's CPU)."""
    async with SQLiteLedger(tmp_path / "data", commit_interval=0.5) as ledger:
        await ledger.record(rec(0))  # after a quiet spell: committed at once
        writer = ledger._writer
        before = switches_of(writer)
        waiting = []
        for i in range(1, 201):
            waiting.append(ledger.record_nowait(rec(i)))
            if i % 2 == 0:
                await asyncio.sleep(0.001)  # arriving over time, within the interval
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        switched = switches_of(writer) - before
        assert ledger.stats.commits == 2
    # The sleep through the interval, the commit's fsync and the wait for the next record: a
    # few switches (4-8 here, beside three CPU burners), not one per record (200 and more).
    # Each 5 ms the writer waits for the GIL the busy loop thread holds is one more: amid the
    # whole suite on 2 cores, 65 and 95 were seen. Three quarters of the records' count stays
    # clear of both.
    assert switched < 150, switched


async def test_full_batches_are_not_held_for_the_interval(tmp_path: Path) -> None:
    """The spacing is for company: a batch that is full, or fills while the writer sleeps out
    the interval, does not wait for its end (a burst of records is written at the disk's pace,
    not one batch per interval)."""
    async with SQLiteLedger(tmp_path / "data", commit_interval=60.0) as ledger:
        await ledger.record(rec(0))  # after a quiet spell: committed at once
        burst = [ledger.record_nowait(rec(1))]
        # The writer has taken that record and sleeps: the interval runs from rec(0)'s commit.
        await asyncio.sleep(0.1)
        burst += [ledger.record_nowait(rec(i)) for i in range(2, 2 * MAX_BATCH + 1)]
        # Far inside the interval, however slow the machine: only a held batch takes longer.
        await asyncio.wait_for(asyncio.gather(*burst), 30)
        assert ledger.stats.commits == 3  # rec(0), then two full batches


async def test_every_acknowledged_record_is_readable_from_another_connection(
        ledger: SQLiteLedger) -> None:
    """When ``record`` returns, the row is committed: another connection (another process,
    after a crash) sees it at that very moment, with no await in between."""
    other = sqlite3.connect(ledger.path, isolation_level=None)
    missing: list[str] = []

    async def write_then_look(i: int) -> None:
        await ledger.record(rec(i))
        found = other.execute("SELECT COUNT(*) FROM usage WHERE job_id = ?",
                              (f"job-{i}",)).fetchone()[0]
        if found != 1:
            missing.append(f"job-{i}")

    try:
        await asyncio.gather(*(write_then_look(i) for i in range(300)))
    finally:
        other.close()
    assert missing == []
    assert ledger.stats.commits < 300  # and they did share commits


async def test_aclose_writes_everything_queued(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path)
    await ledger.start()
    futures = [ledger.record_nowait(rec(i)) for i in range(2 * MAX_BATCH + 10)]
    await ledger.aclose()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(job_ids_on_disk(tmp_path / FILENAME)) == len(futures)
    assert ledger.stats.records == len(futures)
    with pytest.raises(LedgerClosed):
        await ledger.record(rec(10_000))


async def test_aclose_waits_for_a_commit_that_is_held_up(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path)
    await ledger.start()
    with write_lock_held(ledger.path) as blocker:
        futures = [ledger.record_nowait(rec(i)) for i in range(100)]
        asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")
        await ledger.aclose()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(job_ids_on_disk(tmp_path / FILENAME)) == 100


def varied(i: int) -> UsageRecord:
    """Records that differ in every way a row can: NULLs, floats, nested metadata, text."""
    return rec(i, key=f"k{i % 3}", kind="edit" if i % 2 else "generation", n=i % 4 + 1,
               images=i % 3, size=None if i % 5 == 0 else "1024x1536",
               quality=None if i % 7 == 0 else "low", input_tokens=None if i % 2 else i,
               output_tokens=i * 3, total_tokens=None if i % 11 == 0 else i * 4,
               cost=None if i % 13 == 0 else round(i / 1000 + 0.000001, 6),
               status=("succeeded", "failed", "cancelled")[i % 3],
               error_code="upstream_error" if i % 3 == 1 else None,
               user=None if i % 4 else f"user-{i}",
               metadata=None if i % 6 == 0 else {"i": i, "tags": ["a", "ü"], "x": {"y": None}},
               created_at=T0 + i / 7)


async def write_in_one_batch(ledger: SQLiteLedger, records: list[UsageRecord]) -> None:
    """Queue every record behind a held-up commit, so (all but the first) share one batch."""
    with write_lock_held(ledger.path) as blocker:
        writing = asyncio.gather(*(ledger.record(r) for r in records))
        await asyncio.sleep(0.1)
        blocker.execute("COMMIT")
        await asyncio.wait_for(writing, 10)


async def test_a_big_batch_keeps_every_field_and_the_order(ledger: SQLiteLedger) -> None:
    records = [varied(i) for i in range(3 * ROWS_PER_STATEMENT + 7)]  # several statements
    await write_in_one_batch(ledger, records)
    assert ledger.stats.commits <= 2
    conn = sqlite3.connect(ledger.path)
    try:
        in_id_order = [r[0] for r in conn.execute("SELECT job_id FROM usage ORDER BY id")]
    finally:
        conn.close()
    assert in_id_order == [r.job_id for r in records]  # queued order is row order
    report = await ledger.query(key=None, limit=1000)
    assert sorted(report.rows, key=lambda r: r.created_at) == records


async def test_a_batch_fits_a_low_sqlite_parameter_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built against a SQLite that allows few parameters per statement, a batch goes in as
    more, smaller statements (still one transaction)."""
    connect = SQLiteLedger._connect

    def low_limit(self: SQLiteLedger, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(self, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 5 * len(COLUMNS) + 3)
        return conn

    monkeypatch.setattr(SQLiteLedger, "_connect", low_limit)
    async with SQLiteLedger(tmp_path) as ledger:
        records = [varied(i) for i in range(53)]
        await write_in_one_batch(ledger, records)
        assert ledger.stats.commits <= 2 and ledger.stats.records == 53
        report = await ledger.query(key=None, limit=1000)
        assert sorted(report.rows, key=lambda r: r.created_at) == records


async def test_a_refused_row_fails_only_its_own_caller_in_a_shared_batch(
        ledger: SQLiteLedger) -> None:
    admin = sqlite3.connect(ledger.path, isolation_level=None)
    try:
        admin.execute("CREATE TRIGGER refuse BEFORE INSERT ON usage "
                      "WHEN NEW.job_id = 'job-13' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    finally:
        admin.close()
    with write_lock_held(ledger.path) as blocker:
        writing = asyncio.gather(*(ledger.record(rec(i)) for i in range(50)),
                                 return_exceptions=True)
        await asyncio.sleep(0.1)
        blocker.execute("COMMIT")
        results = await asyncio.wait_for(writing, 10)
    refused = [i for i, r in enumerate(results) if r is not None]
    assert refused == [13]
    assert isinstance(results[13], sqlite3.IntegrityError) and "refused" in str(results[13])
    assert job_ids_on_disk(ledger.path) == {f"job-{i}" for i in range(50) if i != 13}
    stats = ledger.stats
    assert (stats.records, stats.failed) == (49, 1)
    assert stats.wakeups <= 3  # the retried batch still wakes the loop once


async def test_a_database_wide_error_fails_the_batch_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locked past the busy timeout: every record of the batch gets the error after one
    timeout, not one timeout per row; once the lock goes, records are written again."""
    monkeypatch.setattr(ledger_module, "BUSY_TIMEOUT_MS", 200)
    async with SQLiteLedger(tmp_path) as ledger:
        with write_lock_held(ledger.path):
            started = time.perf_counter()
            results = await asyncio.gather(*(ledger.record(rec(i)) for i in range(50)),
                                           return_exceptions=True)
            took = time.perf_counter() - started
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        assert took < 5  # row by row it would be at least 50 x 0.2 s
        assert ledger.stats == LedgerStats(records=0, failed=50, commits=0,
                                           wakeups=ledger.stats.wakeups)
        await ledger.record(rec(100))
        assert job_ids_on_disk(ledger.path) == {"job-100"}


async def test_records_from_two_event_loops_each_get_their_answer(
        ledger: SQLiteLedger) -> None:
    async def from_another_loop() -> None:
        await asyncio.gather(*(ledger.record(rec(i)) for i in range(100, 200)))

    await asyncio.gather(
        asyncio.to_thread(asyncio.run, from_another_loop()),
        *(ledger.record(rec(i)) for i in range(100)))
    assert len(job_ids_on_disk(ledger.path)) == 200
    assert ledger.stats.records == 200


_WRITER = textwrap.dedent("""
    import asyncio, os, sys
    from proxy.billing import SQLiteLedger, UsageRecord

    async def main() -> None:
        async with SQLiteLedger(sys.argv[1]) as ledger:
            async def worker(k: int) -> None:
                for i in range(k, 1_000_000, 16):
                    await ledger.record(UsageRecord(
                        job_id=f"job-{i}", key="k", model="m", provider="p",
                        kind="generation", n=1, images=1, size=None, quality=None,
                        input_tokens=None, output_tokens=None, total_tokens=None, cost=0.01,
                        latency_ms=1, status="succeeded", error_code=None, user=None,
                        metadata=None, created_at=1.0))
                    os.write(1, f"job-{i}\\n".encode())  # acknowledged
            await asyncio.gather(*(worker(k) for k in range(16)))

    asyncio.run(main())
""")


def test_acknowledged_records_survive_the_process_being_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acknowledged.append(line.decode().strip())
            if len(acknowledged) >= 300:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: records in flight, no aclose
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    acknowledged += out.decode().split()
    assert len(acknowledged) >= 300
    on_disk = job_ids_on_disk(tmp_path / FILENAME)
    assert set(acknowledged) <= on_disk


def sqlite_memory_used() -> int | None:
    """SQLite's own count of the bytes it holds in this process (every connection), read from
    the library the ``sqlite3`` module is linked with; None where it cannot be reached."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


async def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_a_quiet_writer_gives_back_its_page_cache_once_per_quiet_spell(
        tmp_path: Path) -> None:
    """After a burst of writes and ``idle_seconds`` of quiet, the writer shrinks SQLite's page
    cache and runs ``idle_release`` in its own thread (where the allocator's cache of that
    thread's freed blocks can be handed back); once per quiet spell, and again after more
    writes. Records are written and read as before."""
    threads: list[str] = []
    ledger = SQLiteLedger(tmp_path / "data", idle_seconds=0.3,
                          idle_release=lambda: threads.append(threading.current_thread().name))
    async with ledger:
        await asyncio.gather(*(ledger.record(varied(i)) for i in range(3000)))
        held = sqlite_memory_used()
        await wait_for(lambda: len(threads) == 1)
        assert threads == ["usage-ledger-writer"]
        if held is not None:  # the write connection's page cache went back
            after = sqlite_memory_used()
            assert after is not None and held - after > 256 * 1024
        await asyncio.sleep(0.6)
        assert len(threads) == 1  # quiet still: nothing more to give back
        await ledger.record(varied(3000))
        await wait_for(lambda: len(threads) == 2)
        report = await ledger.query(key=None)
        assert report.totals.requests == 3001


async def test_a_failing_idle_release_does_not_stop_the_writer(tmp_path: Path) -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no")

    async with SQLiteLedger(tmp_path / "data", idle_seconds=0.05, idle_release=broken) as ledger:
        await ledger.record(varied(1))
        await wait_for(lambda: len(calls) == 1)
        await ledger.record(varied(2))
        await wait_for(lambda: len(calls) == 2)
        assert len(job_ids_on_disk(ledger.path)) == 2
