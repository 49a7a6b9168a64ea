"""The ledger's unit tests: a ledger in a temporary folder (``ledger``: SQLite, or either backend
for a test marked ``@BOTH_BACKENDS``, which runs once on each), and a database of the test's
own on the test PostgreSQL (``pg_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.billing import SQLiteLedger, UsageLedger
from proxy.billing.ledger_postgres import PostgresLedger
from tests.support.postgres import fresh_database

# What both backends must do alike: the test runs on SQLite and on PostgreSQL.
BOTH_BACKENDS = pytest.mark.parametrize("ledger", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageLedger]:
    backend: UsageLedger
    if getattr(request, "param", "sqlite") == "sqlite":
        async with SQLiteLedger(tmp_path / "data") as backend:
            yield backend
        return
    async with fresh_database() as url, PostgresLedger(url, tmp_path / "data") as backend:
        yield backend


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url
