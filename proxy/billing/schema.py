"""The ledger's tables, and the migrations that bring an older file up to date.

``schema_version`` holds one row: the number of migrations applied. Each migration runs in the
same transaction as the version bump, so a crash mid-migration leaves the old schema intact.
A file written by a newer gateway (a higher version than this code knows) is refused rather than
written with the wrong columns.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

# Every column of ``usage`` except the rowid, in the order ``record.to_row`` produces.
COLUMNS = ("job_id", "key", "model", "provider", "kind", "n", "images", "size", "quality",
           "input_tokens", "output_tokens", "total_tokens", "cost_micros", "latency_ms",
           "status", "error_code", "user", "metadata", "created_at")

# Quoted throughout: ``key`` and ``user`` are SQL keywords.
COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
INSERT = f"INSERT INTO usage ({COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))})"
_ONE_ROW = f"({', '.join('?' * len(COLUMNS))})"


@lru_cache(maxsize=256)
def insert_rows(count: int) -> str:
    """One INSERT of ``count`` rows (a multi-row VALUES; its parameters are the rows' values,
    row after row). SQLite runs it in one step where ``executemany`` steps once per row, and
    every step gives up the GIL and takes it back from the event loop."""
    if count < 1:
        raise ValueError("an INSERT needs at least one row")
    return f"INSERT INTO usage ({COLUMN_LIST}) VALUES {', '.join([_ONE_ROW] * count)}"

MIGRATIONS: list[list[str]] = [
    # 1: the ledger.
    [
        """
        CREATE TABLE usage (
            id            INTEGER PRIMARY KEY,
            job_id        TEXT    NOT NULL,
            "key"         TEXT    NOT NULL,
            model         TEXT    NOT NULL,
            provider      TEXT    NOT NULL,
            kind          TEXT    NOT NULL CHECK (kind IN ('generation', 'edit')),
            n             INTEGER NOT NULL,
            images        INTEGER NOT NULL,
            size          TEXT,
            quality       TEXT,
            input_tokens  INTEGER,
            output_tokens INTEGER,
            total_tokens  INTEGER,
            cost_micros   INTEGER,
            latency_ms    INTEGER NOT NULL,
            status        TEXT    NOT NULL
                          CHECK (status IN ('succeeded', 'failed', 'cancelled')),
            error_code    TEXT,
            "user"        TEXT,
            metadata      TEXT,
            created_at    REAL    NOT NULL
        )
        """,
        'CREATE INDEX usage_key_created ON usage ("key", created_at)',
        "CREATE INDEX usage_model_created ON usage (model, created_at)",
        # Admin queries (every key) over a time range.
        "CREATE INDEX usage_created ON usage (created_at)",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to ``SCHEMA_VERSION``; returns the version it had. ``conn`` must be in
    autocommit mode (``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            found = 0
        else:
            found = int(row[0])
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(f"the usage ledger has schema version {found}; this gateway "
                               f"knows up to {SCHEMA_VERSION}")
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
