"""The usage ledger on PostgreSQL (``usage.database_url``): two gateway processes that share
nothing but one database (no Redis, separate data directories) enforce one key's budget
together; and a gateway whose ledger database is down refuses budget checks with a 503, never a
500, and keeps the charges it could not write."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from proxy.auth import new_key
from proxy.billing.ledger_spill import spill_files
from proxy.billing.ledger_sqlite import FILENAME
from tests.support.gateways import GatewayFactory
from tests.support.postgres import fresh_database
from tests.support.processes import wait_healthy
from tests.support.servers import free_port

CAPPED, CAPPED_HASH = new_key()
FREE, FREE_HASH = new_key()
# $0.01 an image; the budget allows two jobs and admits a third (spent $0.02 < $0.025).
MODEL = 'models: [{name: local, provider: local, pricing: {per_image: {"*": {"*": 0.01}}}}]'
KEYS = f"""keys:
  - {{name: capped, key_sha256: {CAPPED_HASH}, budget_usd: 0.025, budget_period: day}}
  - {{name: free, key_sha256: {FREE_HASH}}}
"""


async def start(config: Path, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
        "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Two gateway processes on one fresh PostgreSQL database."""
    async with fresh_database() as database:
        processes, urls = [], []
        for name in ("a", "b"):
            config = tmp_path / f"{name}.yaml"
            config.write_text(f"data_dir: {tmp_path / name}\n"
                              f"usage: {{database_url: {json.dumps(database)}}}\n{KEYS}{MODEL}\n")
            port = free_port()
            processes.append(await start(config, port))
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for url in urls:
                await wait_healthy(url)
            yield urls[0], urls[1]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                await asyncio.wait_for(process.wait(), 30)


async def generate(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post(f"{url}/v1/images/generations",
                             json={"model": "local", "prompt": "p", "size": "64x64",
                                   "quality": "low"})


async def booked(client: httpx.AsyncClient, url: str, requests: int) -> dict:
    """The key's usage as ``url`` reads it, once it holds ``requests`` jobs: a job's charge is
    written as its run winds down, just after its answer went out."""
    for _ in range(250):
        usage = (await client.get(f"{url}/v1/usage")).json()
        if usage["totals"]["requests"] >= requests:
            return usage
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never saw {requests} jobs in the ledger: {usage['totals']}")


async def test_a_budget_is_enforced_across_two_instances(fleet: tuple[str, str],
                                                         tmp_path: Path) -> None:
    a, b = fleet
    async with httpx.AsyncClient(timeout=60,
                                 headers={"Authorization": f"Bearer {CAPPED}"}) as client:
        assert (await generate(client, b)).status_code == 200  # $0.01, on B
        await booked(client, a, 1)
        assert (await generate(client, a)).status_code == 200  # $0.02, on A
        await booked(client, b, 2)
        assert (await generate(client, a)).status_code == 200  # $0.02 < $0.025: $0.03
        usage = await booked(client, b, 3)
        refused = await generate(client, b)  # B ran one job of three; the key's spend is A's too
        again = await generate(client, a)
    assert usage["totals"]["cost"] == pytest.approx(0.03, abs=1e-9)
    for response in (refused, again):
        assert response.status_code == 429
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert "spent $0.0300" in error["message"]
        assert response.headers["x-should-retry"] == "false"
        assert int(response.headers["retry-after"]) > 0
    # Nothing went to a local SQLite ledger.
    assert not (tmp_path / "a" / FILENAME).exists() and not (tmp_path / "b" / FILENAME).exists()


def test_a_ledger_database_that_is_down_refuses_budget_checks_with_503(
        start_gateway: GatewayFactory, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "Sup3r-s3cret-pw"
    url = f"postgresql://postgres:{secret}@127.0.0.1:{free_port()}/ledger"  # nothing listens
    caplog.set_level(logging.INFO)
    body = {"model": "local", "prompt": "p", "size": "64x64", "quality": "low"}
    with start_gateway(f"data_dir: {tmp_path}\nusage: {{database_url: {json.dumps(url)}}}\n"
                       f"{KEYS}{MODEL}\n") as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            capped = client.post("/v1/images/generations", json=body,
                                 headers={"Authorization": f"Bearer {CAPPED}"})
            free = client.post("/v1/images/generations", json=body,
                               headers={"Authorization": f"Bearer {FREE}"})
            usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {FREE}"})
    assert capped.status_code == 503 and capped.headers["retry-after"] == "5"
    assert capped.json()["error"]["code"] == "usage_ledger_unavailable"
    assert free.status_code == 200  # a key without a budget is served
    assert usage.status_code == 503
    assert usage.json()["error"]["code"] == "usage_ledger_unavailable"
    # The free key's charge could not be written: at shutdown it went to a spill file, which
    # the next start that reaches the database writes.
    [spilled] = spill_files(tmp_path)
    [row] = [json.loads(line) for line in spilled.read_text().splitlines()]
    assert row[2] == "free" and row[13] == 10_000  # key, cost_micros
    assert "cannot write to PostgreSQL" in caplog.text
    assert secret not in caplog.text
