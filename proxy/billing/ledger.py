"""The usage ledger: what every image request cost, durably. One interface, two backends side by
side (as python-socketio's client managers are), chosen by configuration:

- ``ledger_sqlite.SQLiteLedger``: ``<data_dir>/usage.sqlite3``, the embedded default. One
  ledger per host: instances on different hosts each see only their own spend.
- ``ledger_postgres.PostgresLedger``: a PostgreSQL database (``usage.database_url``) shared by
  a fleet: every instance writes to it and reads budgets and usage from it.

Both group-commit: ``record_nowait`` queues a validated record and returns a future; a single
writer inserts whatever is queued in one transaction and resolves each future once its row is
committed. Nothing is acknowledged before it is stored. ``query`` answers ``GET /v1/usage``;
``spent`` answers budget checks.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Self
from urllib.parse import unquote, urlsplit

from proxy.billing.record import UsageRecord, UsageReport


class LedgerClosed(RuntimeError):
    """The ledger is not running: not started yet, or closed."""


class LedgerUnavailable(RuntimeError):
    """The ledger's database cannot be reached right now (a shared ledger whose server is down or
    unreachable); the same call may succeed later. The message never holds the connection
    string."""


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """What the writer did since ``start``: how well group commit groups.

    ``records / commits`` rows share one transaction on average. ``wakeups`` (SQLite) counts
    the writer thread's ``call_soon_threadsafe`` calls: ``(records + failed) / wakeups`` records
    share one wake-up of their event loop. ``buffered`` (PostgreSQL) records wait for the
    database; ``spilled`` went to the spill file while it could not be reached.
    """

    records: int = 0  # rows committed (their callers are told so)
    failed: int = 0  # records whose caller was given the database's error
    commits: int = 0  # transactions committed
    wakeups: int = 0
    buffered: int = 0
    spilled: int = 0


def check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be a non-negative integer")


def where_clause(mark: Callable[[int], str], *, key: str | None, since: float | None,
                 until: float | None, model: str | None) -> tuple[str, list[str | float]]:
    """`` WHERE …`` for a usage query (or ``""``) and its arguments; ``mark(n)`` spells the
    n-th placeholder (``?`` for SQLite, ``$n`` for PostgreSQL)."""
    where: list[str] = []
    args: list[str | float] = []
    for test, value in (('"key" = {}', key), ("created_at >= {}", since),
                        ("created_at < {}", until), ("model = {}", model)):
        if value is None:
            continue
        args.append(value if isinstance(value, str) else float(value))
        where.append(test.format(mark(len(args))))
    return (f" WHERE {' AND '.join(where)}" if where else ""), args


def redactor(url: str) -> Callable[[str], str]:
    """A function that blanks out a connection string and its password (as written and
    decoded) wherever they appear in a text: errors are told without them."""
    secrets = {url}
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            secrets |= {parts.password, unquote(parts.password)}
        if parts.netloc:
            secrets.add(parts.netloc)
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


class UsageLedger(ABC):
    """``start``, then ``record`` / ``query`` / ``spent`` from the event loop, then ``aclose``."""

    # Other instances write to the same ledger: what a key spent must be read from it at each
    # budget check, never kept (and added to) by one instance.
    shared: ClassVar[bool] = False

    @abstractmethod
    async def start(self) -> None:
        """Open the database (creating its tables if missing) and start the writer."""

    @abstractmethod
    async def aclose(self) -> None:
        """Write everything already queued, then close. Idempotent."""

    @property
    @abstractmethod
    def stats(self) -> LedgerStats:
        """What the writer did since ``start`` (a snapshot; the counters only grow)."""

    @abstractmethod
    def record_nowait(self, rec: UsageRecord) -> asyncio.Future[None]:
        """Queue ``rec`` and return a future that resolves once it is stored.

        The record is queued before this returns, so it is written even if nobody awaits the
        future (or the awaiting task is cancelled). ValueError for an invalid record,
        LedgerClosed after ``aclose``.
        """

    async def record(self, rec: UsageRecord) -> None:
        """Write ``rec``; once this returns it is stored."""
        await self.record_nowait(rec)

    # Read your writes: a usage report waits (a little) for the records queued before it, so a
    # client that asks for its usage right after its answer sees that job. Records are
    # committed in the order they were queued, so the newest one's future says when.
    _newest: asyncio.Future[None] | None = None
    READ_WAIT_SECONDS: ClassVar[float] = 2.0

    def _queued(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        self._newest = future
        return future

    async def _caught_up(self) -> None:
        """Wait until the records queued so far are written (or failed, or ``READ_WAIT_SECONDS``
        passed: the report is then read as it stands)."""
        newest = self._newest
        if newest is None or newest.done() or newest.get_loop() is not asyncio.get_running_loop():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(newest), self.READ_WAIT_SECONDS)

    @abstractmethod
    async def query(self, *, key: str | None, since: float | None = None,
                    until: float | None = None, model: str | None = None, limit: int = 100,
                    offset: int = 0) -> UsageReport:
        """Usage of ``key`` (None: every key) with ``since <= created_at < until``: totals, the
        per-model breakdown and one page of rows (newest first), from one snapshot.

        ``key`` has no default on purpose: reading everyone's usage must be asked for.
        """

    @abstractmethod
    async def spent(self, key: str, since: float) -> Decimal:
        """Exact USD ``key`` was charged for jobs created at ``since`` or later."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
