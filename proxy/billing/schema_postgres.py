"""The ledger's tables in PostgreSQL, created on start, and the statements the ledger runs.

The columns of ``usage`` are the SQLite file's (``schema.COLUMNS``), plus:

- ``record_id``: a UUID the gateway gives a record before its first attempt. A batch retried
  after a commit whose answer was lost (the connection dropped) inserts nothing twice, and
  neither does a replayed spill file (``ON CONFLICT (record_id) DO NOTHING``).
- ``usage_spend``: what each key was charged per UTC day (``floor(created_at / 86400)``), kept
  by the same statement that inserts the rows, so it always agrees with them: a budget check
  reads at most a period's days, not every row of the period.

Creating is idempotent (``IF NOT EXISTS``) and serialised by an advisory lock, so instances
that start together do not race. ``usage_schema_version`` holds the version; a database
written by a newer gateway is refused, as the SQLite file is.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from proxy.billing.record import ModelUsage, UsageRecord, UsageReport, UsageTotals, from_row, to_row
from proxy.billing.schema import COLUMNS, SchemaTooNew

SCHEMA_VERSION = 1
DAY = 86400
# pg_advisory_xact_lock key: "image-proxy usage" (any constant no other application uses).
_LOCK = 0x1D6E_5A9E_0001

_TABLES = [
    "CREATE TABLE IF NOT EXISTS usage_schema_version (version integer NOT NULL)",
    """
    CREATE TABLE IF NOT EXISTS usage (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        record_id     uuid    NOT NULL UNIQUE,
        job_id        text    NOT NULL,
        "key"         text    NOT NULL,
        model         text    NOT NULL,
        provider      text    NOT NULL,
        kind          text    NOT NULL CHECK (kind IN ('generation', 'edit')),
        n             bigint  NOT NULL,
        images        bigint  NOT NULL,
        size          text,
        quality       text,
        input_tokens  bigint,
        output_tokens bigint,
        total_tokens  bigint,
        cost_micros   bigint,
        latency_ms    bigint  NOT NULL,
        status        text    NOT NULL
                      CHECK (status IN ('succeeded', 'failed', 'cancelled')),
        error_code    text,
        "user"        text,
        metadata      text,
        created_at    double precision NOT NULL
    )
    """,
    # GET /v1/usage: one key over a time range, one model, or every key over a time range.
    'CREATE INDEX IF NOT EXISTS usage_key_created ON usage ("key", created_at)',
    "CREATE INDEX IF NOT EXISTS usage_model_created ON usage (model, created_at)",
    "CREATE INDEX IF NOT EXISTS usage_created ON usage (created_at)",
    # Budgets: the primary key is the index a spend read uses.
    """
    CREATE TABLE IF NOT EXISTS usage_spend (
        "key"       text   NOT NULL,
        day         bigint NOT NULL,
        cost_micros bigint NOT NULL,
        PRIMARY KEY ("key", day)
    )
    """,
]

# The PostgreSQL type of each column of a row (``record_id`` first, then ``COLUMNS``).
_TYPES = ("uuid", "text", "text", "text", "text", "text", "int8", "int8", "text", "text",
          "int8", "int8", "int8", "int8", "int8", "text", "text", "text", "text", "float8")
ROW_COLUMNS = ("record_id", *COLUMNS)
assert len(_TYPES) == len(ROW_COLUMNS)
KEY_INDEX = ROW_COLUMNS.index("key")
COST_INDEX = ROW_COLUMNS.index("cost_micros")
CREATED_INDEX = ROW_COLUMNS.index("created_at")



def _text(value: Any) -> Any:
    """PostgreSQL's text holds neither NUL nor lone surrogates (SQLite stores both): they are
    replaced rather than the record lost (a ``user`` string is the client's to choose)."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def pg_row(rec: UsageRecord) -> tuple[Any, ...]:
    """The row to insert, ``ROW_COLUMNS`` in order, with a new ``record_id``; ValueError for
    a record the table would refuse (``record.to_row``)."""
    return (uuid.uuid4(), *(_text(value) for value in to_row(rec)))


COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_ROW_LIST = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
_ARRAYS = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_TYPES, start=1))

# A whole batch in one statement (one round trip, one implicit transaction): the rows come as
# one array per column; the rows actually inserted (not already there) add their costs to
# usage_spend, in (key, day) order so that two writers lock those rows in the same order.
INSERT = f"""
WITH inserted AS (
    INSERT INTO usage ({_ROW_LIST})
    SELECT * FROM unnest({_ARRAYS})
    ON CONFLICT (record_id) DO NOTHING
    RETURNING "key", created_at, cost_micros
)
INSERT INTO usage_spend ("key", day, cost_micros)
SELECT "key", floor(created_at / {DAY})::bigint, SUM(cost_micros)
FROM inserted WHERE cost_micros IS NOT NULL
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT ("key", day) DO UPDATE SET cost_micros = usage_spend.cost_micros + EXCLUDED.cost_micros
"""



def insert_args(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """``INSERT``'s arguments for ``rows``: one list per column."""
    return [list(column) for column in zip(*rows, strict=True)]


# What a key spent since the start of a UTC day (day, month and total budgets all start at one).
SPENT_SINCE_DAY = ('SELECT COALESCE(SUM(cost_micros), 0)::bigint FROM usage_spend '
                   'WHERE "key" = $1 AND day >= $2')
# ... and since any other moment, from the rows.
SPENT_SINCE = ('SELECT COALESCE(SUM(cost_micros), 0)::bigint FROM usage '
               'WHERE "key" = $1 AND created_at >= $2')

# SUM over bigint is numeric in PostgreSQL: cast back, the totals are integers.
SUMS = ("COUNT(*), COALESCE(SUM(images), 0)::bigint, COALESCE(SUM(input_tokens), 0)::bigint, "
        "COALESCE(SUM(output_tokens), 0)::bigint, COALESCE(SUM(total_tokens), 0)::bigint, "
        "COALESCE(SUM(cost_micros), 0)::bigint, COUNT(*) - COUNT(cost_micros)")


async def create_schema(conn: asyncpg.Connection) -> int:
    """Create what is missing; returns the version the database had (0: none). A database
    already at this version is only read (no DDL, so no lock on the tables)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        found = 0
        if await conn.fetchval("SELECT to_regclass('usage_schema_version')") is not None:
            found = await conn.fetchval("SELECT max(version) FROM usage_schema_version") or 0
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(f"the usage ledger's database has schema version {found}; this "
                               f"gateway knows up to {SCHEMA_VERSION}")
        if found < SCHEMA_VERSION:
            for statement in _TABLES:
                await conn.execute(statement)
            await conn.execute("DELETE FROM usage_schema_version")
            await conn.execute("INSERT INTO usage_schema_version (version) VALUES ($1)",
                               SCHEMA_VERSION)
        return int(found)


async def read_report(conn: asyncpg.Connection, clause: str, args: list[Any], limit: int,
                      offset: int) -> UsageReport:
    """A page of ``GET /v1/usage``: the totals, the totals per model and the rows matching
    ``clause``, read in one snapshot (all three statements see the same rows)."""
    page = f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sums = await conn.fetchrow(f"SELECT {SUMS} FROM usage{clause}", *args)
        # COLLATE "C": byte order, as SQLite sorts.
        groups = await conn.fetch(f'SELECT model, {SUMS} FROM usage{clause} '
                                  'GROUP BY model ORDER BY model COLLATE "C"', *args)
        rows = await conn.fetch(f"SELECT {COLUMN_LIST} FROM usage{clause} "
                                f"ORDER BY created_at DESC, id DESC {page}", *args, limit, offset)
    totals = UsageTotals.from_sums(*sums)
    return UsageReport(
        totals=totals,
        by_model=[ModelUsage(model=g[0], totals=UsageTotals.from_sums(*g[1:])) for g in groups],
        rows=[from_row(tuple(row)) for row in rows],
        has_more=offset + len(rows) < totals.requests)
