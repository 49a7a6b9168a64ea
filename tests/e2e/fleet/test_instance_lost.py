"""An instance killed (SIGKILL) mid-job: within two lease intervals its job turns ``failed``
with ``instance_lost`` for a watcher connected to another instance and for readers of its
snapshot, and the key's concurrency slot (``concurrent_jobs: 1``) is free again."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import httpx

from tests.e2e.fleet.conftest import CAPPED, CAPPED_HASH, Fleet, fleet_yaml
from tests.support.progress_client import Watcher, assert_well_formed
from tests.support.redis_server import RedisServer

LEASE = 1.0


def config(redis: RedisServer, tmp_path: Path) -> str:
    return fleet_yaml(redis, tmp_path / "data", f"""
fleet: {{lease_seconds: {LEASE}, store_timeout: 0.2}}
keys: [{{name: capped, key_sha256: {CAPPED_HASH}, concurrent_jobs: 1}}]
models:
  - {{name: local, provider: local}}
  - {{name: local/slow, provider: local, step_delay: 1.0}}
""")


async def test_a_killed_instance_s_job_fails_and_its_slot_frees(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path) -> None:
    a, b = await fleet(config(own_redis, tmp_path), 2)
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(b.url, token=CAPPED)
    headers = {"Authorization": f"Bearer {CAPPED}"}
    body = {"model": "local", "prompt": "p", "size": "64x64", "quality": "low"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        try:
            assert (await watcher.subscribe(job_id))["ok"]
            doomed = asyncio.create_task(http.post(
                f"{a.url}/v1/images/generations", headers={"X-Job-Id": job_id},
                json={**body, "model": "local/slow"}))
            # Two steps in: B has answered through Redis for longer than its reaper waits
            # after start-up (a lease and half a second) before it reaps.
            await watcher.wait_for(lambda e: (e["step"] or 0) >= 2)
            busy = await http.post(f"{b.url}/v1/images/generations", json=body)
            assert busy.status_code == 429  # the key's one slot is A's job's, fleet-wide

            a.kill()
            killed = time.monotonic()
            lost = await watcher.wait_for(lambda e: e["status"] == "failed", timeout=3 * LEASE)
            heard = time.monotonic() - killed
            free = await first_admitted(http, b.url, body)
            freed = time.monotonic() - killed
            with contextlib.suppress(httpx.TransportError):
                await doomed  # its client lost the connection with A
            snapshot = (await http.get(f"{b.url}/v1/images/jobs/{job_id}")).json()
        finally:
            await watcher.close()
    assert lost["error"]["code"] == "instance_lost" and lost["percent"] < 100
    assert heard <= 2 * LEASE, f"the watcher heard it {heard:.2f} s after the kill"
    assert free.status_code == 200 and freed <= 2 * LEASE, f"slot free after {freed:.2f} s"
    assert (snapshot["status"], snapshot["error"]["code"]) == ("failed", "instance_lost")
    assert snapshot["seq"] == lost["seq"]
    assert_well_formed(watcher.events)
    assert "was ended (instance_lost)" in b.logged()


async def first_admitted(http: httpx.AsyncClient, url: str,
                         body: dict[str, str]) -> httpx.Response:
    """Send the job until the key's concurrency limit admits it."""
    for _ in range(100):
        response = await http.post(f"{url}/v1/images/generations", json=body)
        if response.status_code != 429:
            return response
        assert response.json()["error"]["code"] == "concurrency_limit_exceeded"
        await asyncio.sleep(0.05)
    raise AssertionError("the slot never came free")
