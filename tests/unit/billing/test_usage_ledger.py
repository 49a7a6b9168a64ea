"""The usage ledger against a real SQLite file (and, for what both backends must do alike, a real
PostgreSQL database): writes, queries, exact sums, restarts, load."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from starlette.requests import Request

from proxy.billing import (
    FILENAME,
    SCHEMA_VERSION,
    LedgerClosed,
    SchemaTooNew,
    SQLiteLedger,
    UsageLedger,
    UsageMeter,
)
from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Failed, Image, Usage
from proxy.http.usage_query import parse_usage_query, usage_endpoint
from tests.unit.billing.conftest import BOTH_BACKENDS
from tests.unit.billing.records import T0, rec


def rows_on_disk(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
    finally:
        conn.close()


async def test_creates_the_file_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    data = tmp_path / "nested" / "data"
    async with SQLiteLedger(data):
        conn = sqlite3.connect(data / FILENAME)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)]
            indexes = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'")}
            assert {"usage_key_created", "usage_model_created"} <= indexes
        finally:
            conn.close()


@BOTH_BACKENDS
async def test_every_field_round_trips(ledger: UsageLedger) -> None:
    full = rec(1, kind="edit", n=3, images=2, quality=None, cost=0.123456, status="failed",
               error_code="upstream_timeout", user="user-42", input_tokens=None,
               metadata={"team": "design", "nested": {"ids": [1, 2]}, "emoji": "🎨"})
    await ledger.record(full)
    report = await ledger.query(key="alice")
    assert report.rows == [full]
    body = orjson.loads(orjson.dumps(report.to_dict()))
    assert body["object"] == "usage"
    assert body["data"][0] == {**full.to_dict()}
    assert body["data"][0]["metadata"] == {"team": "design", "nested": {"ids": [1, 2]},
                                           "emoji": "🎨"}


@BOTH_BACKENDS
async def test_a_report_read_right_after_a_record_is_queued_holds_it(ledger: UsageLedger) -> None:
    """Read your writes: the gateway queues a job's record as it answers (it does not wait for
    the commit), and a client that asks for its usage at once must see that job."""
    records = [rec(i) for i in range(1, 40)]
    for record in records:
        ledger.record_nowait(record)  # queued, not awaited: as the gateway does
    report = await ledger.query(key="alice", limit=100)
    assert sorted(row.job_id for row in report.rows) == sorted(r.job_id for r in records)


@BOTH_BACKENDS
async def test_metadata_none_and_empty_stay_distinct(ledger: UsageLedger) -> None:
    await ledger.record(rec(1, metadata=None))
    await ledger.record(rec(2, metadata={}))
    rows = {r.job_id: r.metadata for r in (await ledger.query(key=None)).rows}
    assert rows == {"job-1": None, "job-2": {}}


@BOTH_BACKENDS
async def test_filters_by_key_model_and_time(ledger: UsageLedger) -> None:
    for i in range(10):
        await ledger.record(rec(i, key="alice" if i % 2 else "bob",
                                model="m-a" if i < 5 else "m-b"))
    everyone = await ledger.query(key=None)
    assert everyone.totals.requests == 10
    alice = await ledger.query(key="alice")
    assert {r.job_id for r in alice.rows} == {"job-1", "job-3", "job-5", "job-7", "job-9"}
    # start inclusive, end exclusive
    window = await ledger.query(key=None, since=T0 + 2, until=T0 + 6)
    assert [r.job_id for r in window.rows] == ["job-5", "job-4", "job-3", "job-2"]
    model_b = await ledger.query(key=None, model="m-b")
    assert {r.model for r in model_b.rows} == {"m-b"} and model_b.totals.requests == 5
    combined = await ledger.query(key="bob", model="m-a", since=T0 + 1)
    assert [r.job_id for r in combined.rows] == ["job-4", "job-2"]
    assert (await ledger.query(key="nobody")).totals.requests == 0


@BOTH_BACKENDS
async def test_pages_carry_exact_totals_over_all_rows(ledger: UsageLedger) -> None:
    for i in range(25):
        await ledger.record(rec(i, cost=0.1, images=2, model="m-a" if i % 5 else "m-b"))
    seen: list[str] = []
    for offset in (0, 10, 20):
        page = await ledger.query(key="alice", limit=10, offset=offset)
        assert page.totals.requests == 25
        assert page.totals.images == 50
        assert page.totals.cost == Decimal("2.5")
        assert page.totals.total_tokens == 25 * 110
        assert [(m.model, m.totals.requests) for m in page.by_model] == [("m-a", 20),
                                                                          ("m-b", 5)]
        assert page.has_more == (offset < 20)
        seen += [r.job_id for r in page.rows]
    assert seen == [f"job-{i}" for i in range(24, -1, -1)]  # newest first, no gaps or repeats
    past_end = await ledger.query(key="alice", limit=10, offset=30)
    assert past_end.rows == [] and not past_end.has_more and past_end.totals.requests == 25


@BOTH_BACKENDS
async def test_cost_sums_are_exact(ledger: UsageLedger) -> None:
    for i, cost in enumerate([0.1, 0.1, 0.1, 0.2, None]):
        await ledger.record(rec(i, cost=cost))
    report = await ledger.query(key="alice")
    assert report.totals.cost == Decimal("0.5")
    assert report.totals.unpriced_requests == 1
    assert report.by_model[0].totals.cost == Decimal("0.5")
    body = orjson.loads(orjson.dumps(report.to_dict()))
    assert body["totals"]["cost"] == 0.5
    assert orjson.dumps(body["totals"]["cost"]) == b"0.5"
    assert [r["cost"] for r in body["data"]] == [None, 0.2, 0.1, 0.1, 0.1]


@BOTH_BACKENDS
async def test_cost_sums_do_not_drift_like_floats(ledger: UsageLedger) -> None:
    costs = [0.1] * 10
    assert sum(costs) != 1.0  # what summing floats (SQL SUM over REAL) would give
    await asyncio.gather(*(ledger.record(rec(i, cost=c)) for i, c in enumerate(costs)))
    report = await ledger.query(key=None)
    assert report.totals.cost == Decimal("1")
    assert report.to_dict()["totals"]["cost"] == 1.0


@BOTH_BACKENDS
async def test_spent_is_what_a_key_was_charged_since_a_moment(ledger: UsageLedger) -> None:
    day = 86400.0
    start = (T0 // day) * day  # a budget period starts at a UTC midnight
    for i, (moment, cost) in enumerate([(start - 1, 0.5), (start, 0.25), (start + 10, 0.125),
                                        (start + day, 1.0), (start + 20, None)]):
        await ledger.record(rec(i, created_at=moment, cost=cost))
    await ledger.record(rec(9, key="bob", created_at=start, cost=7.0))
    assert await ledger.spent("alice", 0) == Decimal("1.875")
    assert await ledger.spent("alice", start) == Decimal("1.375")
    assert await ledger.spent("alice", start + 5) == Decimal("1.125")
    assert await ledger.spent("alice", start + day) == Decimal("1")
    assert await ledger.spent("carol", 0) == 0


@BOTH_BACKENDS
async def test_many_small_costs_sum_exactly(ledger: UsageLedger) -> None:
    await asyncio.gather(*(ledger.record(rec(i, cost=0.000001)) for i in range(1000)))
    assert (await ledger.query(key=None)).totals.cost == Decimal("0.001")


async def test_acknowledged_records_are_committed(ledger: SQLiteLedger) -> None:
    # Another connection (another process, after a crash) sees it the moment record returns.
    await ledger.record(rec(1))
    assert rows_on_disk(ledger.path) == 1


async def test_restart_keeps_every_record_and_total(tmp_path: Path) -> None:
    first = SQLiteLedger(tmp_path)
    await first.start()
    await asyncio.gather(*(first.record(rec(i, cost=0.1, key=f"k{i % 3}")) for i in range(60)))
    before = await first.query(key=None, limit=1000)
    await first.aclose()
    await first.aclose()  # idempotent

    async with SQLiteLedger(tmp_path) as second:
        after = await second.query(key=None, limit=1000)
        assert after.totals == before.totals
        assert after.by_model == before.by_model
        assert after.rows == before.rows
        assert after.totals.requests == 60 and after.totals.cost == Decimal("6")
        await second.record(rec(60))
        assert (await second.query(key=None)).totals.requests == 61


@BOTH_BACKENDS
async def test_concurrent_records_all_land(ledger: UsageLedger) -> None:
    await asyncio.gather(*(ledger.record(rec(i, key=f"k{i % 7}")) for i in range(200)))
    report = await ledger.query(key=None, limit=1000)
    assert report.totals.requests == 200
    assert {r.job_id for r in report.rows} == {f"job-{i}" for i in range(200)}


async def test_record_waits_off_the_event_loop(ledger: SQLiteLedger) -> None:
    """Hold the database's write lock elsewhere: ``record`` must wait for it without stalling
    the loop, and must not return before its row is committed."""
    blocker = sqlite3.connect(ledger.path, isolation_level=None)
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    try:
        blocker.execute("BEGIN IMMEDIATE")
        ticking = asyncio.create_task(ticker())
        writing = asyncio.create_task(ledger.record(rec(1)))
        await asyncio.sleep(0.2)
        assert not writing.done()  # not acknowledged while it cannot commit
        assert ticks > 100  # ... and the loop kept running meanwhile
        blocker.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        stop = True
        await ticking
    finally:
        blocker.close()
    assert rows_on_disk(ledger.path) == 1


@BOTH_BACKENDS
async def test_reads_proceed_while_records_stream_in(ledger: UsageLedger) -> None:
    writes = asyncio.gather(*(ledger.record(rec(i)) for i in range(100)))
    reads = [await ledger.query(key="alice") for _ in range(5)]
    await writes
    assert all(r.totals.requests == len(r.rows) or r.has_more for r in reads)
    assert (await ledger.query(key="alice")).totals.requests == 100


@BOTH_BACKENDS
async def test_invalid_records_fail_their_own_call(ledger: UsageLedger) -> None:
    with pytest.raises(ValueError, match="kind"):
        await ledger.record(rec(1, kind="variation"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        await ledger.record(rec(2, cost=float("nan")))
    with pytest.raises(ValueError, match="metadata"):
        await ledger.record(rec(3, metadata={"x": float("inf")}))
    await ledger.record(rec(4))
    assert [r.job_id for r in (await ledger.query(key=None)).rows] == ["job-4"]


async def test_a_cancelled_caller_still_gets_its_record_written(ledger: SQLiteLedger) -> None:
    task = asyncio.create_task(ledger.record(rec(1)))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await ledger.record(rec(2))  # written after the first: the first is on disk by now
    assert rows_on_disk(ledger.path) == 2


async def test_closed_ledger_refuses(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path)
    with pytest.raises(LedgerClosed):
        await ledger.record(rec(1))
    await ledger.start()
    await ledger.aclose()
    with pytest.raises(LedgerClosed):
        await ledger.record(rec(1))
    with pytest.raises(LedgerClosed):
        await ledger.query(key=None)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    async with SQLiteLedger(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / FILENAME)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(SchemaTooNew):
        await SQLiteLedger(tmp_path).start()


# ---- GET /v1/usage -------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "param"), [
    ({"start_time": "yesterday"}, "start_time"),
    ({"start_time": "-5"}, "start_time"),
    ({"start_time": "nan"}, "start_time"),
    ({"start_time": "1e9"}, "start_time"),
    ({"end_time": ""}, "end_time"),
    ({"start_time": "200", "end_time": "100"}, "end_time"),
    ({"start_time": "100", "end_time": "100"}, "end_time"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "+5"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"offset": "1.5"}, "offset"),
    ({"model": ""}, "model"),
])
def test_bad_params_are_400s_naming_the_param(query: dict[str, str], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_usage_query(query, key_name="alice", is_admin=False)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert param in caught.value.message


def test_params_parse() -> None:
    q = parse_usage_query({"start_time": "100", "end_time": "200.5", "model": "m",
                           "limit": "1000", "offset": "7"}, key_name="alice", is_admin=False)
    assert (q.key, q.since, q.until, q.model, q.limit, q.offset) == ("alice", 100.0, 200.5,
                                                                      "m", 1000, 7)
    defaults = parse_usage_query({}, key_name="alice", is_admin=False)
    assert (defaults.key, defaults.limit, defaults.offset) == ("alice", 100, 0)


def test_only_admins_choose_the_key() -> None:
    assert parse_usage_query({}, key_name="root", is_admin=True).key is None
    assert parse_usage_query({"key": "bob"}, key_name="root", is_admin=True).key == "bob"
    assert parse_usage_query({"key": "alice"}, key_name="alice", is_admin=False).key == "alice"
    with pytest.raises(GatewayError) as caught:
        parse_usage_query({"key": "bob"}, key_name="alice", is_admin=False)
    assert (caught.value.status, caught.value.param) == (403, "key")


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/usage", "headers": [],
                    "query_string": query.encode()})


@BOTH_BACKENDS
async def test_endpoint_scopes_to_the_callers_key(ledger: UsageLedger) -> None:
    for i in range(6):
        await ledger.record(rec(i, key="alice" if i < 4 else "bob", cost=0.1))
    mine = await usage_endpoint(_request("limit=3"), ledger, key_name="alice", is_admin=False)
    assert mine["object"] == "usage"
    assert mine["totals"]["requests"] == 4 and mine["totals"]["cost"] == 0.4
    assert [row["job_id"] for row in mine["data"]] == ["job-3", "job-2", "job-1"]
    assert mine["has_more"] is True
    assert mine["by_model"] == [{"model": "openai/gpt-image-1", **mine["totals"]}]
    admin = await usage_endpoint(_request(f"start_time={T0 + 1:.0f}"), ledger,
                                 key_name="root", is_admin=True)
    assert admin["totals"]["requests"] == 5 and admin["has_more"] is False
    only_bob = await usage_endpoint(_request("key=bob"), ledger, key_name="root",
                                    is_admin=True)
    assert {row["key"] for row in only_bob["data"]} == {"bob"}
    json.dumps(admin)  # plain JSON types throughout


# ---- the meter ---------------------------------------------------------------------------


def _meter() -> UsageMeter:
    return UsageMeter(job_id="j", key="alice", model="m", provider="p", kind="generation",
                      n=2, size=None, quality="auto", user="u", metadata={"a": "b"})


def test_meter_records_a_completed_job() -> None:
    meter = _meter()
    before = time.time()
    for event in (Image(index=0, b64_json="x"), Image(index=1, b64_json="y"),
                  Completed(usage=Usage(input_tokens=5, output_tokens=7),
                            resolved={"size": "1024x1024", "quality": "high"})):
        meter.observe(event)
    record = meter.finish(cost=0.25)
    assert (record.status, record.images, record.size, record.quality) == (
        "succeeded", 2, "1024x1024", "high")
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (5, 7, 12)
    assert record.cost == 0.25 and record.error_code is None
    assert record.metadata == {"a": "b"} and record.user == "u"
    assert record.created_at <= before and record.latency_ms >= 0


def test_meter_prefers_the_upstreams_charge() -> None:
    meter = _meter()
    meter.observe(Completed(cost_usd=0.0700000001))
    assert meter.finish(cost=0.5).cost == 0.07


def test_meter_records_failures_and_cancellations() -> None:
    failed = _meter()
    failed.observe(Failed(GatewayError(504, "slow", code="upstream_timeout")))
    record = failed.finish(cancelled=True)
    assert (record.status, record.error_code, record.images, record.cost) == (
        "failed", "upstream_timeout", 0, None)
    gone = _meter()
    gone.observe(Image(index=0, b64_json="x"))
    assert (gone.finish(cancelled=True).status, gone.images) == ("cancelled", 1)
    done_then_gone = _meter()
    done_then_gone.observe(Completed())
    assert done_then_gone.finish(cancelled=True).status == "succeeded"
