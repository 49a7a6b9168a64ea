"""Ended jobs' snapshots in one process, kept ``jobs.retention_seconds`` (an hour by default)
for ``GET /v1/images/jobs/{id}`` and late subscribers: serialised (as the Redis store keeps them)
in an in-memory SQLite table, not as Python objects. The memory store moves them here in
batches (:class:`~proxy.progress.snapshots.MemorySnapshotStore`): once the process is idle, or
when many have ended meanwhile.

Why not a dict of :class:`JobSnapshot`: those are the objects that outlive a burst. Each ended job
left ~10 small objects (the snapshot, its id and floats, a dict entry's and an expiry heap's
tuples), made while the burst's thousands of requests were being served, so they landed all over
the ~70 1 MiB arenas of CPython's small-object allocator that the burst had filled, and an arena
is given back only once every object in it is gone: 2,000 such snapshots (~1.3 MB) were most of
what kept ~65 of them resident (docs/benchmarks.md, "Ended snapshots out of Python objects").
SQLite's pages are blocks of ~4 KiB from ``malloc``, about ten snapshots each, written after the
burst (at the idle pass) or a thousand at a time.

One cursor serves every statement, and each statement is made when the table is: a new cursor
per call would leave a weak reference to it in the connection (purged only every 200 cursors),
and a statement first run under load is cached from then on; small objects of a burst that
outlive it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import orjson

from proxy.progress.snapshot import JobSnapshot

# Expired rows are deleted at most this often (reads skip them anyway).
SWEEP_SECONDS = 1.0

_SCHEMA = ("CREATE TABLE ended (job_id TEXT PRIMARY KEY, expires REAL NOT NULL, "
           "data BLOB NOT NULL) WITHOUT ROWID",
           "CREATE INDEX ended_expiry ON ended (expires)")
_PUT = "INSERT OR REPLACE INTO ended VALUES (?, ?, ?)"
_GET = "SELECT data FROM ended WHERE job_id = ? AND expires > ?"
_DELETE = "DELETE FROM ended WHERE job_id = ?"
_SWEEP = "DELETE FROM ended WHERE expires <= ?"


class EndedSnapshots:
    """Ended jobs' snapshots by job id, each until its expiry (a ``time.monotonic`` value)."""

    def __init__(self) -> None:
        # Used from one event loop at a time, which need not be the thread that built it.
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._cursor = self._db.cursor()
        for statement in _SCHEMA:
            self._cursor.execute(statement)
        self._next_sweep = 0.0
        # Every statement made (and cached) now, not first under load: see the docstring.
        self.put((), 0.0)
        self.get("", 0.0)
        self.discard("")

    def put(self, snapshots: Iterable[tuple[float, JobSnapshot]], now: float) -> None:
        """Keep each snapshot until its expiry (one transaction)."""
        self.sweep(now)
        self._cursor.execute("BEGIN")
        try:
            self._cursor.executemany(_PUT, ((s.job_id, expires, orjson.dumps(s.to_store()))
                                            for expires, s in snapshots))
        finally:
            self._cursor.execute("COMMIT")

    def get(self, job_id: str, now: float) -> JobSnapshot | None:
        row = self._cursor.execute(_GET, (job_id, now)).fetchone()
        return None if row is None else JobSnapshot.from_store(orjson.loads(row[0]))

    def discard(self, job_id: str) -> None:
        self._cursor.execute(_DELETE, (job_id,))

    def sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            self._cursor.execute(_SWEEP, (now,))

    def clear(self) -> None:
        """Forget every snapshot (the store stops; reads after it find nothing)."""
        self._cursor.execute("DELETE FROM ended")
