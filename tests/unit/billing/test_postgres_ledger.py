"""The PostgreSQL ledger against a real PostgreSQL (a database of each test's own): the schema,
group commit, spend shared between instances, and what happens when the database goes away."""

from __future__ import annotations

import asyncio
import logging
import shutil
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from proxy.billing import LedgerUnavailable, SchemaTooNew
from proxy.billing.ledger_postgres import PostgresLedger
from proxy.billing.ledger_spill import spill_files
from proxy.billing.schema_postgres import DAY, SCHEMA_VERSION
from tests.support.postgres import database_url
from tests.support.tcp_relay import Relay
from tests.unit.billing.records import T0, rec

SECRET = "Sup3r-s3cret-pw"


async def fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def row_count(url: str) -> int:
    return (await fetch(url, "SELECT COUNT(*) FROM usage"))[0][0]


def through(relay: Relay, url: str, *, password: str | None = None) -> str:
    """``url`` reached through ``relay`` (and with a password the trusting server ignores)."""
    parts = urlsplit(url)
    user = parts.username + (f":{password}" if password else "")
    return parts._replace(netloc=f"{user}@127.0.0.1:{relay.port}").geturl()


@pytest.fixture
async def relay(pg_url: str):
    parts = urlsplit(pg_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await relay.restore()
    yield relay
    await relay.cut()


async def test_instances_starting_together_create_the_schema_once(pg_url: str,
                                                                  tmp_path: Path) -> None:
    ledgers = [PostgresLedger(pg_url, tmp_path) for _ in range(4)]
    await asyncio.gather(*(ledger.start() for ledger in ledgers))
    for ledger in ledgers:
        await ledger.aclose()
    assert [tuple(r) for r in await fetch(pg_url, "SELECT version FROM usage_schema_version")] \
        == [(SCHEMA_VERSION,)]
    indexes = {r[0] for r in await fetch(pg_url, "SELECT indexname FROM pg_indexes")}
    assert {"usage_key_created", "usage_model_created", "usage_created",
            "usage_spend_pkey", "usage_record_id_key"} <= indexes


async def test_a_newer_schema_is_refused(pg_url: str, tmp_path: Path) -> None:
    async with PostgresLedger(pg_url, tmp_path):
        pass
    await fetch(pg_url, f"UPDATE usage_schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        await PostgresLedger(pg_url, tmp_path).start()


async def test_two_instances_share_records_and_spend(pg_url: str, tmp_path: Path) -> None:
    async with (PostgresLedger(pg_url, tmp_path / "a") as a,
                PostgresLedger(pg_url, tmp_path / "b") as b):
        await a.record(rec(1, cost=0.25))
        await b.record(rec(2, cost=0.5, key="bob"))
        await a.record(rec(3, cost=0.125))
        assert await b.spent("alice", 0) == Decimal("0.375")
        assert await a.spent("bob", 0) == Decimal("0.5")
        assert (await b.query(key=None)).totals.requests == 3


async def test_spend_by_day_agrees_with_the_rows(pg_url: str, tmp_path: Path) -> None:
    day0 = (T0 // DAY) * DAY
    moments = [day0 - 1, day0, day0 + 1, day0 + DAY - 0.5, day0 + DAY, day0 + 3 * DAY + 7]
    async with PostgresLedger(pg_url, tmp_path) as ledger:
        await asyncio.gather(*(ledger.record(rec(i, created_at=t, cost=0.01 * (i + 1)))
                               for i, t in enumerate(moments)))
        await ledger.record(rec(99, created_at=day0 + 5, cost=None))  # unpriced: no spend
        for since in [0.0, day0, day0 + DAY, day0 + 2 * DAY, day0 + 0.5, day0 + DAY - 0.5]:
            expected = sum(Decimal(str(0.01 * (i + 1))) for i, t in enumerate(moments)
                           if t >= since)
            assert await ledger.spent("alice", since) == expected, since
        assert await ledger.spent("nobody", 0) == 0


async def test_concurrent_records_share_a_few_commits(pg_url: str, tmp_path: Path) -> None:
    async with PostgresLedger(pg_url, tmp_path) as ledger:
        await asyncio.gather(*(ledger.record(rec(i, key=f"k{i % 5}")) for i in range(600)))
        stats = ledger.stats
    assert stats.records == 600 and stats.failed == 0
    assert stats.commits <= 20, stats  # a batch per commit, not a commit per record
    assert await row_count(pg_url) == 600


async def test_a_refused_row_fails_only_its_own_caller(pg_url: str, tmp_path: Path) -> None:
    async with PostgresLedger(pg_url, tmp_path) as ledger:
        futures = [ledger.record_nowait(rec(i)) for i in range(5)]
        futures.insert(2, ledger.record_nowait(rec(9, input_tokens=2**70)))  # out of bigint
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert [isinstance(o, asyncpg.DataError) for o in outcomes] == [False] * 2 + [True] + \
        [False] * 3
    assert await row_count(pg_url) == 5


async def test_text_postgres_cannot_hold_is_replaced_not_lost(pg_url: str,
                                                              tmp_path: Path) -> None:
    async with PostgresLedger(pg_url, tmp_path) as ledger:
        await ledger.record(rec(1, user="a\x00b\ud800c"))
        [row] = (await ledger.query(key="alice")).rows
    assert row.user == "a\ufffdb?c"


async def test_spend_counts_records_not_yet_committed(pg_url: str, tmp_path: Path) -> None:
    blocker = await asyncpg.connect(pg_url)
    try:
        async with PostgresLedger(pg_url, tmp_path) as ledger:
            await ledger.record(rec(1, cost=1.0))
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE usage IN SHARE MODE")  # inserts wait; reads don't
            waiting = ledger.record_nowait(rec(2, cost=2.0))
            await asyncio.sleep(0.2)
            assert not waiting.done() and ledger.stats.buffered == 1
            assert await ledger.spent("alice", 0) == Decimal("3")
            await tx.rollback()
            await asyncio.wait_for(waiting, 5)
            assert await ledger.spent("alice", 0) == Decimal("3")  # once, not twice
    finally:
        await blocker.close()


async def test_records_wait_out_an_outage_and_land_once(
        pg_url: str, relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proxy.billing")
    url = through(relay, pg_url, password=SECRET)
    async with PostgresLedger(url, tmp_path) as ledger:
        await ledger.record(rec(0, cost=0.5))
        await relay.cut()
        futures = [ledger.record_nowait(rec(i, cost=0.5)) for i in range(1, 6)]
        await asyncio.sleep(0.5)  # a few retries
        assert not any(f.done() for f in futures) and ledger.stats.buffered == 5
        with pytest.raises(LedgerUnavailable):
            await ledger.spent("alice", 0)
        with pytest.raises(LedgerUnavailable):
            await ledger.query(key=None)
        await relay.restore()
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert await ledger.spent("alice", 0) == Decimal("3")
    assert await row_count(pg_url) == 6
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write to PostgreSQL" in m for m in messages) == 1  # once, not per retry
    assert sum("cannot read PostgreSQL" in m for m in messages) == 1
    assert any("writing to PostgreSQL again" in m for m in messages)
    assert SECRET not in caplog.text


async def test_a_database_down_at_start_is_written_once_it_is_back(
        pg_url: str, relay: Relay, tmp_path: Path) -> None:
    await relay.cut()
    async with PostgresLedger(through(relay, pg_url), tmp_path) as ledger:
        future = ledger.record_nowait(rec(1))
        await asyncio.sleep(0.3)
        assert not future.done()
        await relay.restore()
        await asyncio.wait_for(future, 10)
    assert await row_count(pg_url) == 1


async def test_a_database_that_refuses_us_stops_the_start_without_the_password(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    parts = urlsplit(database_url("image_proxy_no_such_database", pg_url))
    url = parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}")
    with pytest.raises(RuntimeError, match="InvalidCatalogNameError") as caught:
        await PostgresLedger(url.geturl(), tmp_path).start()
    assert SECRET not in str(caught.value) and SECRET not in caplog.text
    assert SECRET not in repr(PostgresLedger(url.geturl(), tmp_path))


async def test_closing_during_an_outage_spills_and_the_next_start_replays_once(
        pg_url: str, relay: Relay, tmp_path: Path) -> None:
    async with PostgresLedger(through(relay, pg_url), tmp_path, close_grace=0.3) as ledger:
        await ledger.record(rec(0, cost=0.25))
        await relay.cut()
        futures = [ledger.record_nowait(rec(i, cost=0.25)) for i in range(1, 4)]
    await asyncio.wait_for(asyncio.gather(*futures), 1)  # acknowledged: fsynced in the file
    assert ledger.stats.spilled == 3
    [spilled] = spill_files(tmp_path)
    kept = tmp_path / "copy.keep"
    shutil.copy(spilled, kept)
    async with PostgresLedger(pg_url, tmp_path) as again:
        assert spill_files(tmp_path) == []
        assert await again.spent("alice", 0) == Decimal("1")
    # The same file replayed a second time (another process sharing the folder) adds nothing.
    shutil.copy(kept, spilled)
    async with PostgresLedger(pg_url, tmp_path) as again:
        assert await again.spent("alice", 0) == Decimal("1")
        assert (await again.query(key=None)).totals.requests == 4


async def test_past_the_buffer_limit_records_go_to_disk(pg_url: str, relay: Relay,
                                                        tmp_path: Path) -> None:
    async with PostgresLedger(through(relay, pg_url), tmp_path, max_buffered=4) as ledger:
        await relay.cut()
        futures = [ledger.record_nowait(rec(i)) for i in range(10)]
        await asyncio.wait_for(asyncio.gather(*futures[4:]), 5)  # the newest six, spilled
        assert not any(f.done() for f in futures[:4]) and ledger.stats.buffered == 4
        assert len(spill_files(tmp_path)) == 1
        await relay.restore()
        await asyncio.wait_for(asyncio.gather(*futures[:4]), 10)
    assert spill_files(tmp_path) == []
    assert {r[0] for r in await fetch(pg_url, "SELECT job_id FROM usage")} == {
        f"job-{i}" for i in range(10)}


async def test_a_spill_file_that_is_not_rows_is_set_aside(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "usage-unwritten-1-0.jsonl"
    bad.write_text('["not", "a row"]\n')
    async with PostgresLedger(pg_url, tmp_path):
        pass
    assert not bad.exists() and (tmp_path / (bad.name + ".rejected")).exists()
    assert "cannot replay a spill file" in caplog.text
