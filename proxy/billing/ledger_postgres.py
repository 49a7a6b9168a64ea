"""The usage ledger in PostgreSQL (``usage.database_url``): one ledger for a fleet of gateways,
so that budgets and spend hold across instances. The SQLite ledger's twin (see ``ledger.py``;
docs/usage-ledger.md has the whole story, outages included).

Group commit, as in SQLite: ``record_nowait`` validates the record on the event loop, gives it
a ``record_id``, buffers it and returns a future; one writer task inserts everything buffered
(up to ``MAX_BATCH`` rows) with one statement (``unnest`` of one array per column: one round
trip, one transaction) that also adds the costs to ``usage_spend``, then resolves each future.
Records that arrive during a commit share the next; a lone record is written at once.

While PostgreSQL cannot be reached (at start or during a run) records stay buffered and the
writer retries, logging once when writing stops working and once when it works again; past
``MAX_BUFFERED`` records, or at ``aclose`` after ``CLOSE_GRACE`` seconds, they are fsynced to a
spill file that the next connection replays (``ledger_spill``). Nothing is acknowledged before
it is committed or spilled. Reads raise ``LedgerUnavailable`` (logged once per outage).

``spent`` reads the shared ``usage_spend`` at every call and adds this instance's records not
committed yet (counted before the read: a commit landing during the read may count twice, never
not at all). The connection string may hold a password: it is never logged nor put in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from proxy.billing.ledger import (
    LedgerClosed,
    LedgerStats,
    LedgerUnavailable,
    UsageLedger,
    check_page,
    redactor,
    where_clause,
)
from proxy.billing.ledger_spill import replay, write_spill
from proxy.billing.record import (
    UsageRecord,
    UsageReport,
    micros_to_decimal,
)
from proxy.billing.schema import SchemaTooNew
from proxy.billing.schema_postgres import (
    COST_INDEX,
    CREATED_INDEX,
    DAY,
    INSERT,
    KEY_INDEX,
    SPENT_SINCE,
    SPENT_SINCE_DAY,
    create_schema,
    insert_args,
    pg_row,
    read_report,
)

log = logging.getLogger("proxy.billing")

MAX_BATCH = 512  # rows per statement at most; the rest go with the next, at once
MAX_BUFFERED = 50_000  # records kept in memory while the database cannot be written
READ_CONNECTIONS = 4  # the pool that answers GET /v1/usage and budget checks
TIMEOUT = 5.0  # seconds to connect, for a write, or for a budget check's read
QUERY_TIMEOUT = 60.0  # seconds for the statements of one GET /v1/usage (an admin's may be big)
CLOSE_GRACE = 5.0  # aclose waits this long for the database before spilling what is left
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0

T = TypeVar("T")
# A buffered record: its row (record_id first) and the future its caller awaits.
_Pending = tuple[tuple[Any, ...], asyncio.Future[None]]
# Errors about some rows of a batch, not the database: the batch is retried row by row.
_ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# Errors that mean "not now": down, unreachable, starting, shutting down, out of connections.
_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError,
                asyncpg.ConnectionDoesNotExistError)
# What a read may meet when the database is not there (or not ready: no tables yet).
_READ_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresLedger(UsageLedger):
    """The usage ledger in a PostgreSQL database that every instance of a fleet shares."""

    shared = True

    def __init__(self, url: str, data_dir: str | Path, *, max_buffered: int = MAX_BUFFERED,
                 close_grace: float = CLOSE_GRACE, timeout: float = TIMEOUT) -> None:
        self._url = url
        self._redact = redactor(url)
        self.data_dir = Path(data_dir)  # for spill files only
        self._max_buffered, self._close_grace, self._timeout = max_buffered, close_grace, timeout
        self._buffer: deque[_Pending] = deque()
        # Per key: (created_at, cost_micros) of buffered records that have a cost, in order.
        self._unsent: dict[str, deque[tuple[float, int]]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._open = self._closing = False
        self._write_down: str | None = None  # why writing fails, while it does (logged once)
        self._read_down = False
        self._records = self._failed = self._commits = self._spilled = 0

    def __repr__(self) -> str:
        return f"PostgresLedger(data_dir={str(self.data_dir)!r})"  # never the URL

    def _describe(self, exc: BaseException) -> str:
        return self._redact(f"{type(exc).__name__}: {exc}")[:300]

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the tables if missing and replay spill files; start the writer."""
        if self._writer is not None:
            raise RuntimeError("the usage ledger is already started")
        self._loop = asyncio.get_running_loop()
        self._wake, self._closing = asyncio.Event(), False
        self._write_down, self._read_down = None, False
        self._records = self._failed = self._commits = self._spilled = 0
        try:
            await self._writer_conn()
        except _UNREACHABLE as exc:
            self._lost(exc)  # the writer keeps trying; reads answer LedgerUnavailable
        except SchemaTooNew:
            raise
        except Exception as exc:
            raise RuntimeError("the usage ledger cannot use its PostgreSQL database: "
                               f"{self._describe(exc)}") from None
        try:  # min_size 0: made without connecting; reads open connections as they need them
            self._pool = await asyncpg.create_pool(
                self._url, min_size=0, max_size=READ_CONNECTIONS, timeout=self._timeout,
                command_timeout=QUERY_TIMEOUT)
        except BaseException:
            self._drop_connection()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="usage-ledger-writer")
        self._open = True

    async def aclose(self) -> None:
        """Write what is buffered (``CLOSE_GRACE`` seconds at most, none if writing already
        fails: what is left goes to a spill file), then close. Idempotent."""
        writer = self._writer
        if writer is None:
            return
        self._open, self._closing = False, True
        self._wake.set()
        # Writing already fails: waiting for the database would only delay the exit.
        grace = self._close_grace if self._write_down is None else 0
        try:
            await asyncio.wait_for(asyncio.shield(writer), grace)
        except TimeoutError:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self._buffer:
            await self._spill(len(self._buffer))
        self._writer = None
        self._drop_connection()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except (TimeoutError, *_READ_ERRORS):
                pool.terminate()

    @property
    def stats(self) -> LedgerStats:
        return LedgerStats(records=self._records, failed=self._failed, commits=self._commits,
                           buffered=len(self._buffer), spilled=self._spilled)

    # ---- writing ---------------------------------------------------------------------------

    def record_nowait(self, rec: UsageRecord) -> asyncio.Future[None]:
        if not self._open:
            raise LedgerClosed("the usage ledger is not running")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError("the PostgreSQL usage ledger serves the event loop it started on")
        row = pg_row(rec)
        future: asyncio.Future[None] = loop.create_future()
        self._buffer.append((row, future))
        if row[COST_INDEX] is not None:
            self._unsent.setdefault(row[KEY_INDEX], deque()).append(
                (row[CREATED_INDEX], row[COST_INDEX]))
        self._wake.set()
        return self._queued(future)

    def _forget(self, row: tuple[Any, ...], *, newest: bool) -> None:
        """``row`` left the buffer (the oldest record of its key, or the newest)."""
        if row[COST_INDEX] is None:
            return
        waiting = self._unsent[row[KEY_INDEX]]
        if newest:
            waiting.pop()
        else:
            waiting.popleft()
        if not waiting:
            del self._unsent[row[KEY_INDEX]]

    async def _write_loop(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            if len(self._buffer) > self._max_buffered:
                await self._spill(len(self._buffer) - self._max_buffered)
            if not self._buffer:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(self._buffer, MAX_BATCH))
            try:
                conn = await self._writer_conn()
                errors = await self._write_rows(conn, [row for row, _ in batch])
            except Exception as exc:  # the database, not the rows: keep them, try again
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_FIRST
            if self._write_down is not None:
                log.warning("usage ledger: writing to PostgreSQL again (%d record(s) waiting)",
                            len(self._buffer))
                self._write_down = None
            self._settle(batch, errors)

    async def _writer_conn(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        conn = await asyncpg.connect(self._url, timeout=self._timeout,
                                     command_timeout=self._timeout)
        try:
            await create_schema(conn)
            await self._replay(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _lost(self, exc: BaseException) -> None:
        """Writing failed: start afresh on a new connection, and say so once per outage."""
        self._drop_connection()
        if self._write_down is None:
            self._write_down = self._describe(exc)
            log.warning("usage ledger: cannot write to PostgreSQL (%s); %d record(s) kept until "
                        "it can, retrying", self._write_down, len(self._buffer))

    async def _write_rows(self, conn: asyncpg.Connection,
                          rows: list[tuple[Any, ...]]) -> list[BaseException | None]:
        """Insert ``rows`` in one statement; each row's error, None once committed. A row the
        database refuses fails alone; any other error is the database's, raised."""
        try:
            await conn.execute(INSERT, *insert_args(rows))
        except _ROW_ERRORS as exc:
            if len(rows) > 1:
                return [error for row in rows for error in await self._write_rows(conn, [row])]
            log.error("usage ledger: PostgreSQL refused the record of job %r (%s)", rows[0][1],
                      type(exc).__name__)
            return [exc]
        self._commits += 1
        return [None] * len(rows)

    def _settle(self, batch: list[_Pending], errors: list[BaseException | None]) -> None:
        """``batch`` (the head of the buffer) is written: tell each caller."""
        for (row, future), error in zip(batch, errors, strict=True):
            self._buffer.popleft()
            self._forget(row, newest=False)
            if error is None:
                self._records += 1
            else:
                self._failed += 1
            if future.done():  # the caller was cancelled; its record is written all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def _spill(self, count: int) -> None:
        """Move the newest ``count`` buffered records to a spill file (acknowledged: they are
        on disk, and replayed once the database can be written)."""
        taken: list[_Pending] = []
        for _ in range(count):
            item = self._buffer.pop()
            self._forget(item[0], newest=True)
            taken.append(item)
        taken.reverse()
        try:
            path = await asyncio.to_thread(write_spill, self.data_dir, [r for r, _ in taken])
        except OSError as exc:
            log.error("usage ledger: %d record(s) LOST: PostgreSQL cannot be written and "
                      "neither can a spill file in %s (%s)", len(taken), self.data_dir, exc)
            self._failed += len(taken)
            outcomes: list[BaseException | None] = [
                LedgerUnavailable("the usage record could not be stored")] * len(taken)
        else:
            log.warning("usage ledger: %d record(s) kept in %s until PostgreSQL can be written",
                        len(taken), path)
            self._spilled += len(taken)
            outcomes = [None] * len(taken)
        for (_, future), error in zip(taken, outcomes, strict=True):
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def _replay(self, conn: asyncpg.Connection) -> None:
        async def write(rows: list[tuple[Any, ...]]) -> None:
            for start in range(0, len(rows), MAX_BATCH):
                await self._write_rows(conn, rows[start:start + MAX_BATCH])

        await replay(self.data_dir, write)

    # ---- reading ---------------------------------------------------------------------------

    async def _read(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        pool = self._pool
        if not self._open or pool is None:
            raise LedgerClosed("the usage ledger is not running")
        try:
            try:
                async with pool.acquire(timeout=self._timeout) as conn:
                    result = await work(conn)
            except asyncpg.ConnectionDoesNotExistError:
                # A pooled connection the server dropped (it restarted): once more, anew.
                async with pool.acquire(timeout=self._timeout) as conn:
                    result = await work(conn)
        except _READ_ERRORS as exc:
            if not self._read_down:
                self._read_down = True
                log.warning("usage ledger: cannot read PostgreSQL (%s); usage queries and "
                            "budget checks are refused until it answers", self._describe(exc))
            raise LedgerUnavailable("the usage ledger's database cannot be read right now") \
                from None
        if self._read_down:
            log.warning("usage ledger: reading PostgreSQL again")
            self._read_down = False
        return result

    async def query(self, *, key: str | None, since: float | None = None,
                    until: float | None = None, model: str | None = None, limit: int = 100,
                    offset: int = 0) -> UsageReport:
        check_page(limit, offset)
        await self._caught_up()
        clause, args = where_clause(lambda n: f"${n}", key=key, since=since, until=until,
                                    model=model)
        return await self._read(lambda conn: read_report(conn, clause, args, limit, offset))

    async def spent(self, key: str, since: float) -> Decimal:
        """From ``usage_spend`` when ``since`` starts a UTC day (every budget period does),
        else from the rows; plus this instance's records not committed yet."""
        since = float(since)
        unsent = sum(micros for created, micros in self._unsent.get(key, ()) if created >= since)
        day, rest = divmod(since, DAY)
        if rest == 0:
            committed = await self._read(lambda c: c.fetchval(SPENT_SINCE_DAY, key, int(day),
                                                              timeout=self._timeout))
        else:
            committed = await self._read(lambda c: c.fetchval(SPENT_SINCE, key, since,
                                                              timeout=self._timeout))
        return micros_to_decimal(int(committed) + unsent)
