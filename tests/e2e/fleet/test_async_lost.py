"""An async job (``Prefer: respond-async``) whose runner is killed (SIGKILL) mid-run is not left
running: its job had begun (its provider was called), so the instance that takes its queue entry
over fails it ``instance_lost``, saying the upstream may have been called, within two lease
intervals, read from another instance; it is not run again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.e2e.fleet.conftest import FREE, FREE_HASH, Fleet, fleet_yaml, runner_of
from tests.support.redis_server import RedisServer

LEASE = 1.0


async def test_a_killed_runner_s_async_job_fails_instance_lost(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path) -> None:
    gateways = await fleet(fleet_yaml(own_redis, tmp_path / "data", f"""
fleet: {{lease_seconds: {LEASE}, store_timeout: 0.2}}
keys: [{{name: free, key_sha256: {FREE_HASH}}}]
models: [{{name: local/slow, provider: local, step_delay: 1.0}}]
"""), 2)
    headers = {"Authorization": f"Bearer {FREE}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        accepted = await http.post(
            f"{gateways[0].url}/v1/images/generations", headers={"Prefer": "respond-async"},
            json={"model": "local/slow", "prompt": "p", "size": "64x64", "quality": "low"})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        runner = await runner_of(own_redis, gateways, job_id)
        (other,) = [g for g in gateways if g is not runner]
        where = f"{other.url}{accepted.headers['location']}"
        # Running, read from the other instance; two steps in, that one has answered through
        # Redis for longer than its take-over waits after start-up (a lease and half a second).
        for _ in range(100):
            job = (await http.get(where)).json()
            if (job.get("step") or 0) >= 2:
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "running", job

        runner.kill()
        killed = time.monotonic()
        while job["status"] == "running" and time.monotonic() - killed < 3 * LEASE:
            await asyncio.sleep(0.05)
            job = (await http.get(where)).json()
        ended = time.monotonic() - killed
        await asyncio.sleep(LEASE)
        later = (await http.get(where)).json()
    assert (job["status"], job["error"]["code"]) == ("failed", "instance_lost"), job
    assert "may have been called" in job["error"]["message"]
    assert ended <= 2 * LEASE, f"ended {ended:.2f} s after the kill"
    assert "result" not in job
    assert (later["status"], later["seq"]) == ("failed", job["seq"])
