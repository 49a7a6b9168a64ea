"""The SQLite usage ledger, the embedded default: every image request, durably, in
``<data_dir>/usage.sqlite3``. One per host (see ``ledger.py`` for the PostgreSQL twin a fleet
shares).

Writes go through one writer thread that owns the only write connection (group commit):

- ``record`` validates the record on the event loop, puts it on a queue and waits on a future;
- the thread takes everything queued so far (up to ``MAX_BATCH`` rows), inserts it in one
  transaction and commits it (WAL, ``synchronous=FULL``: fsynced before the commit returns).
  The rows go in as multi-row INSERTs, one SQLite step per ``ROWS_PER_STATEMENT`` rows: each
  step gives up the GIL and takes it back from the busy event loop, which ``executemany`` would
  do once per row;
- then it wakes each event loop that has records in the batch once, with one
  ``call_soon_threadsafe`` whose callback resolves every future of the batch on that loop.

Under load, records that arrive while a commit is in flight share the next commit and the next
wake-up, so many writers cost one fsync and one loop wake-up. Commits are also spaced: one
begins at most every ``commit_interval`` (``usage.commit_interval``, 50 ms by default), the
records of that interval sharing it. A commit of one row cost 180 us of CPU here (most of it
the kernel's, for the fsync), one of sixteen rows 20 us a row; without the spacing, a gateway
answering ~700 small requests a second committed them one or two at a time (an fsync takes
~0.4 ms), a fifth of its CPU. A record after a quiet spell is committed at once (no timer waits
for company), and the answer to a request never waits for its record (its ``GET /v1/usage``
read does). Nothing is acknowledged before it is on disk.

The thread sleeps through the interval rather than waiting on the queue, so records arriving
meanwhile do not wake it. Each time it runs it must take the GIL back from the busy event loop
(after its sleep, and after each SQLite call that let it go), and those hand-offs cost a
saturated gateway about as much as SQLite's own work: of the ~0.07 ms of CPU the ledger added
to a small request (0.45 ms in all, 16 connections, 10 ms spacing), ~0.035 went with the
thread even when it wrote nothing, ~0.02 to SQLite, ~0.015 to the row and its future. Fewer,
larger commits make it cheaper: with 50 ms spacing ~2,320 requests a second against ~2,200
(without a ledger ~2,650). An acknowledgement then waits up to 50 ms; an answer never does.

Reads run on a small pool of threads, each with its own read-only connection; WAL lets them
read while the writer writes. A query's totals, breakdown and page come from one read
transaction, so they describe the same snapshot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from proxy.billing.ledger import (
    LedgerClosed,
    LedgerStats,
    UsageLedger,
    check_page,
    where_clause,
)
from proxy.billing.record import (
    ModelUsage,
    UsageRecord,
    UsageReport,
    UsageTotals,
    from_row,
    micros_to_decimal,
    to_row,
)
from proxy.billing.schema import COLUMN_LIST, COLUMNS, insert_rows, migrate

log = logging.getLogger("proxy.billing")

FILENAME = "usage.sqlite3"
# Rows per transaction at most; the rest wait for the next commit (which follows at once).
MAX_BATCH = 512
# Rows per INSERT statement at most (fewer if SQLite allows fewer parameters): a batch of up to
# this many is one statement and one step of SQLite; the writer caches one statement per size.
ROWS_PER_STATEMENT = 64
# At most one commit begins per this many seconds (the configuration's default).
COMMIT_INTERVAL = 0.050
# How long a connection waits for a lock another connection (or process) holds.
BUSY_TIMEOUT_MS = 10_000
READ_THREADS = 2
# After this many seconds with nothing to write, the writer gives back what a burst left it
# (see ``SQLiteLedger._quiet``), once per quiet spell.
IDLE_RELEASE_SECONDS = 3.0

T = TypeVar("T")
# A queued record: its row, the future its caller awaits, and the loop that future belongs to.
_Pending = tuple[tuple[Any, ...], asyncio.Future[None], asyncio.AbstractEventLoop]
# What a record's caller learns: None once its row is committed, else the error.
_Outcome = tuple[asyncio.Future[None], BaseException | None]

_SUMS = ('COUNT(*), COALESCE(SUM(images), 0), COALESCE(SUM(input_tokens), 0), '
         'COALESCE(SUM(output_tokens), 0), COALESCE(SUM(total_tokens), 0), '
         'COALESCE(SUM(cost_micros), 0), COUNT(*) - COUNT(cost_micros)')


def _acknowledge(outcomes: Sequence[_Outcome]) -> None:
    """On the event loop: resolve every future of one batch, in one callback."""
    for future, error in outcomes:
        if future.done():  # the caller was cancelled; its record is written all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _prepare_inserts(cursor: sqlite3.Cursor, rows_per_statement: int) -> None:
    """Make (and cache) every statement the writer runs now: the INSERT of every size up to
    ``rows_per_statement`` (executed without parameters, each is prepared, then refused before
    it runs), and an empty transaction's."""
    for count in range(1, rows_per_statement + 1):
        with contextlib.suppress(sqlite3.ProgrammingError):
            cursor.execute(insert_rows(count), ())
    for statement in ("BEGIN IMMEDIATE", "COMMIT", "BEGIN IMMEDIATE", "ROLLBACK"):
        cursor.execute(statement)


def _gather(first: _Pending, pending: queue.SimpleQueue[_Pending | None]
            ) -> tuple[list[_Pending], bool]:
    """``first`` and what else is queued now (up to ``MAX_BATCH`` records), without waiting,
    and whether the ``None`` that stops the writer was among them."""
    batch = [first]
    while len(batch) < MAX_BATCH:
        try:
            item = pending.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


def _row_specific(error: Exception) -> bool:
    """Whether ``error`` may concern only some rows of a batch (a constraint, a value), so the
    batch is worth retrying row by row. ``OperationalError`` concerns the database as a whole
    (locked past the busy timeout, I/O error, disk full, read-only): every row would meet it
    again, each after its own busy timeout."""
    return not isinstance(error, sqlite3.OperationalError)


class SQLiteLedger(UsageLedger):
    """The durable usage ledger in one SQLite file (see the module docstring): ``start``, then
    ``record``, ``query`` and ``spent`` from the event loop, then ``aclose``."""

    def __init__(self, data_dir: str | Path, *, commit_interval: float = COMMIT_INTERVAL,
                 idle_release: Callable[[], None] | None = None,
                 idle_seconds: float = IDLE_RELEASE_SECONDS) -> None:
        self.data_dir = Path(data_dir)
        self.commit_interval = commit_interval
        # Run in the writer thread once it has been idle ``idle_seconds`` (what of the thread's
        # own the allocator keeps: its cache of freed blocks), after SQLite's page cache.
        self.idle_release, self.idle_seconds = idle_release, idle_seconds
        self.path = self.data_dir / FILENAME
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        # Cuts the writer's sleep through the commit interval short: set by ``aclose``, and by
        # the record that fills a batch (a full batch is not kept waiting).
        self._wake = threading.Event()
        self._closed = False  # aclose asked the writer to stop: its sleeps end at once
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open = False
        # Written by the writer thread only; read through ``stats``.
        self._records = self._failed = self._commits = self._wakeups = 0
        self._rows_per_statement = 1

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the directory and file if missing, migrate the schema, start the writer."""
        if self._writer is not None:
            raise RuntimeError("the usage ledger is already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closed = False
        self._records = self._failed = self._commits = self._wakeups = 0
        self._writer = threading.Thread(target=self._write_loop, args=(ready, self._queue),
                                        name="usage-ledger-writer", daemon=True)
        self._writer.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            # Failed (the thread has ended) or cancelled (it ends once set up): either way it
            # must not keep waiting for records.
            self._queue.put(None)
            self._writer = None
            raise
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=READ_THREADS, thread_name_prefix="usage-ledger-reader")
        self._open = True

    async def aclose(self) -> None:
        """Write everything already queued, then close. Idempotent."""
        if self._writer is None:
            return
        self._open = False
        readers, self._readers = self._readers, None
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, wait=True)
        with self._lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        self._queue.put(None)
        self._closed = True
        self._wake.set()
        writer, self._writer = self._writer, None
        await asyncio.to_thread(writer.join)

    @property
    def stats(self) -> LedgerStats:
        """What the writer did since ``start`` (a snapshot; the counters only grow)."""
        return LedgerStats(records=self._records, failed=self._failed, commits=self._commits,
                           wakeups=self._wakeups)

    # ---- writing ---------------------------------------------------------------------------

    def record_nowait(self, rec: UsageRecord) -> asyncio.Future[None]:
        """Queue ``rec`` and return a future that resolves once it is committed.

        The record is queued before this returns, so it is written even if nobody awaits the
        future (or the awaiting task is cancelled). ValueError for an invalid record,
        LedgerClosed after ``aclose``.
        """
        if not self._open:
            raise LedgerClosed("the usage ledger is not running")
        row = to_row(rec)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((row, future, loop))
        if self._queue.qsize() == MAX_BATCH - 1:
            # With the record the writer holds, a full batch: it stops sleeping out the
            # interval (once per batch; a record that does not fill one wakes nobody).
            self._wake.set()
        return self._queued(future)

    def _connect(self, *, cached_statements: int = 128) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=cached_statements)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def _write_loop(self, ready: concurrent.futures.Future[None],
                    pending: queue.SimpleQueue[_Pending | None]) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Room for an INSERT of every size up to ROWS_PER_STATEMENT, and a few more.
            conn = self._connect(cached_statements=ROWS_PER_STATEMENT + 32)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise RuntimeError(f"cannot put the usage ledger in WAL mode (got {mode})")
                # FULL: each commit is fsynced, so an acknowledged record survives power loss.
                conn.execute("PRAGMA synchronous = FULL")
                migrate(conn)
                self._rows_per_statement = max(1, min(
                    ROWS_PER_STATEMENT,
                    conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)))
            except BaseException as exc:
                ready.set_exception(exc)
                return
            # One cursor for every write: a cursor per statement leaves a weak reference to it
            # in the connection, purged only every 200 cursors; those, and INSERTs of sizes first
            # seen under load, would be small objects made amid a burst that outlive it, each
            # keeping one of the allocator's 1 MiB arenas resident (proxy.service.memory).
            cursor = conn.cursor()
            _prepare_inserts(cursor, self._rows_per_statement)
            ready.set_result(None)
            self._drain(cursor, pending)
        finally:
            conn.close()

    def _drain(self, cursor: sqlite3.Cursor,
               pending: queue.SimpleQueue[_Pending | None]) -> None:
        """Commit whatever is queued, batch after batch, until the ``None`` that ``aclose``
        queues behind the last record."""
        stopping = False
        last_commit = -math.inf
        released = True  # nothing written yet: nothing to give back
        while not stopping:
            first = self._next(pending, cursor, released)  # waits while nothing is queued
            released = False
            if first is None:
                return
            # Within ``commit_interval`` of the last commit: what arrives until then joins.
            # The thread sleeps through the rest of the interval instead of waiting on the
            # queue: a wait on the queue would wake it (and take the GIL from the event loop)
            # once per record. ``aclose`` cuts the sleep short, and so does the record that
            # fills a batch: a full batch is not kept waiting.
            wait = last_commit + self.commit_interval - time.monotonic()
            if wait > 0:
                if not self._closed:
                    self._wake.clear()  # then look: a batch filling (or aclose) from now wakes it
                if pending.qsize() < MAX_BATCH - 1 and not self._closed:
                    self._wake.wait(wait)
            batch, stopping = _gather(first, pending)
            last_commit = time.monotonic()
            self._notify(batch, self._write_batch(cursor, batch))
            # Not held while the next record is awaited: the last batch of a burst would stay
            # (rows, futures), small objects amid the burst's garbage (proxy.service.memory).
            del first, batch

    def _next(self, pending: queue.SimpleQueue[_Pending | None], cursor: sqlite3.Cursor,
              released: bool) -> _Pending | None:
        """The next record (or the ``None`` that stops the writer), as soon as it is queued;
        if none comes for ``idle_seconds`` after a write, the quiet spell begins with
        :meth:`_quiet`."""
        if released or self.idle_seconds <= 0:
            return pending.get()
        try:
            return pending.get(timeout=self.idle_seconds)
        except queue.Empty:
            self._quiet(cursor)
            return pending.get()

    def _quiet(self, cursor: sqlite3.Cursor) -> None:
        """Give back what a burst of writes left the writer: SQLite's page cache of the write
        connection (up to 2 MB, refilled from the OS's file cache by the next write) and, by
        ``idle_release``, the thread's cache of freed blocks, which nothing outside this
        thread can reach. Freed now, the gateway's idle passes return the pages to the system
        (after 2,000 streams ~0.4 MB of SQLite's growth was this connection's page cache,
        pinned until the next write otherwise; the rest, +1.3 MB, the ended jobs' snapshots
        in ``proxy.progress.ended``, kept on purpose)."""
        try:
            cursor.execute("PRAGMA shrink_memory")
        except sqlite3.Error as exc:  # never worth stopping the writer for
            log.debug("usage ledger: shrink_memory failed: %s", exc)
        if self.idle_release is not None:
            try:
                self.idle_release()
            except Exception as exc:  # a hook's failure must not end the writer
                log.debug("usage ledger: idle release failed: %s", exc)

    def _write_batch(self, cursor: sqlite3.Cursor,
                     batch: list[_Pending]) -> list[BaseException | None]:
        """Insert ``batch`` in one transaction; each record's error, None once committed."""
        try:
            self._insert(cursor, [row for row, _, _ in batch], self._rows_per_statement)
        except Exception as exc:
            if len(batch) == 1 or not _row_specific(exc):
                log.error("usage ledger: could not write %d record(s): %s", len(batch), exc)
                self._failed += len(batch)
                return [exc] * len(batch)
            # One at a time, so a row the database refuses fails only its own caller.
            return [error for item in batch for error in self._write_batch(cursor, [item])]
        self._commits += 1
        self._records += len(batch)
        return [None] * len(batch)

    def _notify(self, batch: list[_Pending], errors: list[BaseException | None]) -> None:
        """Wake each event loop with records in ``batch`` once, to resolve all of them."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for (_, future, loop), error in zip(batch, errors, strict=True):
            by_loop.setdefault(loop, []).append((future, error))
        for loop, outcomes in by_loop.items():
            self._wakeups += 1
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(_acknowledge, outcomes)

    @staticmethod
    def _insert(cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]],
                rows_per_statement: int) -> None:
        """Insert ``rows`` in one transaction, committed (and fsynced) before this returns.

        Up to ``rows_per_statement`` rows are one statement in autocommit mode, which is a
        transaction of its own: one step of SQLite for the whole batch. More take a few
        statements between BEGIN IMMEDIATE and COMMIT.
        """
        if len(rows) <= rows_per_statement:
            cursor.execute(insert_rows(len(rows)), list(itertools.chain.from_iterable(rows)))
            return
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(rows), rows_per_statement):
                chunk = rows[start:start + rows_per_statement]
                cursor.execute(insert_rows(len(chunk)),
                               list(itertools.chain.from_iterable(chunk)))
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise

    # ---- reading ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open or self._readers is None:
            raise LedgerClosed("the usage ledger is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: work(self._reader()))

    async def query(self, *, key: str | None, since: float | None = None,
                    until: float | None = None, model: str | None = None, limit: int = 100,
                    offset: int = 0) -> UsageReport:
        """Usage of ``key`` (None: every key) with ``since <= created_at < until``.

        ``key`` has no default on purpose: reading everyone's usage must be asked for.
        """
        check_page(limit, offset)
        await self._caught_up()
        clause, args = where_clause(lambda _: "?", key=key, since=since, until=until,
                                    model=model)

        def run(conn: sqlite3.Connection) -> UsageReport:
            conn.execute("BEGIN")  # one snapshot for all three statements
            try:
                totals = UsageTotals.from_sums(
                    *conn.execute(f"SELECT {_SUMS} FROM usage{clause}", args).fetchone())
                by_model = [
                    ModelUsage(model=row[0], totals=UsageTotals.from_sums(*row[1:]))
                    for row in conn.execute(
                        f"SELECT model, {_SUMS} FROM usage{clause} GROUP BY model "
                        "ORDER BY model", args)
                ]
                rows = [
                    from_row(row) for row in conn.execute(
                        f"SELECT {COLUMN_LIST} FROM usage{clause} "
                        "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                        [*args, limit, offset])
                ]
            finally:
                conn.execute("COMMIT")
            return UsageReport(totals=totals, by_model=by_model, rows=rows,
                               has_more=offset + len(rows) < totals.requests)

        return await self._read(run)

    async def spent(self, key: str, since: float) -> Decimal:
        """What ``key`` was charged since ``since`` (the ``("key", created_at)`` index)."""

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute('SELECT COALESCE(SUM(cost_micros), 0) FROM usage '
                               'WHERE "key" = ? AND created_at >= ?', (key, float(since)))
            return int(row.fetchone()[0])

        return micros_to_decimal(await self._read(run))
