"""Two gateway processes sharing one Redis behave as one gateway: progress of a job POSTed to
one reaches a Socket.IO client connected to the other, a key's rate limit holds across both,
and an async job started on one is read on the other."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from proxy.auth import new_key
from tests.support.processes import wait_healthy
from tests.support.progress_client import Watcher
from tests.support.servers import free_port

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")
KEY, KEY_HASH = new_key()


async def start(config: str, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", config, "--port", str(port),
        "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


@pytest.fixture
async def pair(tmp_path) -> AsyncIterator[tuple[str, str]]:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"  # this run's keys only
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
redis_url: {REDIS_URL}
redis_prefix: {prefix}
data_dir: {tmp_path / "data"}
keys: [{{name: shared, key_sha256: {KEY_HASH}, requests_per_minute: 3}}]
models:
  - {{name: local/slow, provider: local, step_delay: 0.1}}
""")
    ports = free_port(), free_port()
    processes = [await start(str(config), port) for port in ports]
    urls = tuple(f"http://127.0.0.1:{port}" for port in ports)
    try:
        for url in urls:
            await wait_healthy(url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
        client = aioredis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/images/generations", timeout=60,
                      headers={"Authorization": f"Bearer {KEY}", **kwargs.pop("headers", {})},
                      json={"model": "local/slow", "prompt": "p", "size": "64x64",
                            "quality": "low", **kwargs})


async def test_two_processes_share_progress_limits_and_jobs(pair) -> None:
    a, b = pair
    # Progress of a job POSTed to B reaches a watcher connected to A.
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(a, token=KEY)
    try:
        assert (await watcher.subscribe(job_id))["ok"]
        response = await asyncio.to_thread(post, b, headers={"X-Job-Id": job_id})
        assert response.status_code == 200
        final = await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    assert final["percent"] == 100 and len(watcher.events) > 3

    # An async job started on A is read on B.
    accepted = await asyncio.to_thread(post, a, headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202
    location = accepted.headers["location"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as client:
        for _ in range(100):
            job = (await client.get(f"{b}{location}")).json()
            if job["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    assert job["result"]["data"][0]["b64_json"]

    # The key's 3 requests per minute hold across both: 2 used above (one on each), one
    # left, then 429 whichever process is asked.
    assert (await asyncio.to_thread(post, b)).status_code == 200
    refused = await asyncio.to_thread(post, a)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
