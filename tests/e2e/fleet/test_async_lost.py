"""An async job (``Prefer: respond-async``) whose instance is killed (SIGKILL) mid-run is not
left running: read from another instance it turns ``failed`` with ``instance_lost`` within two
lease intervals, and stays so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.e2e.fleet.conftest import FREE, FREE_HASH, Fleet, fleet_yaml
from tests.support.redis_server import RedisServer

LEASE = 1.0


async def test_a_killed_instance_s_async_job_fails_instance_lost(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path) -> None:
    a, b = await fleet(fleet_yaml(own_redis, tmp_path / "data", f"""
fleet: {{lease_seconds: {LEASE}, store_timeout: 0.2}}
keys: [{{name: free, key_sha256: {FREE_HASH}}}]
models: [{{name: local/slow, provider: local, step_delay: 1.0}}]
"""), 2)
    headers = {"Authorization": f"Bearer {FREE}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        accepted = await http.post(
            f"{a.url}/v1/images/generations", headers={"Prefer": "respond-async"},
            json={"model": "local/slow", "prompt": "p", "size": "64x64", "quality": "low"})
        assert accepted.status_code == 202, accepted.text
        where = f"{b.url}{accepted.headers['location']}"
        # Running on A, read from B; two steps in, B has answered through Redis for longer
        # than its reaper waits after start-up (a lease and half a second).
        for _ in range(100):
            job = (await http.get(where)).json()
            if (job.get("step") or 0) >= 2:
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "running", job

        a.kill()
        killed = time.monotonic()
        while job["status"] == "running" and time.monotonic() - killed < 3 * LEASE:
            await asyncio.sleep(0.05)
            job = (await http.get(where)).json()
        ended = time.monotonic() - killed
        await asyncio.sleep(LEASE)
        later = (await http.get(where)).json()
    assert (job["status"], job["error"]["code"]) == ("failed", "instance_lost"), job
    assert ended <= 2 * LEASE, f"ended {ended:.2f} s after the kill"
    assert "result" not in job
    assert (later["status"], later["seq"]) == ("failed", job["seq"])
