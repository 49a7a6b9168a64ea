"""Idempotent job ids in a fleet: two gateway processes share one Redis, where the claims live.
A repeat that reaches the other process while the job runs waits for it and replays its answer
(one upstream call, one charge, the same bytes); another request under the id is a 409 there
too; a failure worth retrying frees the id for every process; a stream dropped on one process
re-attaches on the other."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from tests.e2e.idempotency.conftest import MODEL, frames, usage_rows
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.processes import wait_healthy
from tests.support.servers import RunningServer, free_port, serve

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOpenAI, RunningServer]]:
    fake = FakeOpenAI()
    with serve(fake.app) as server:
        yield fake, server


@pytest.fixture
async def fleet(tmp_path, upstream) -> AsyncIterator[tuple[str, str, str]]:
    """Two gateway processes (their URLs) and the Redis prefix they share."""
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
redis_url: {REDIS_URL}
redis_prefix: {prefix}
data_dir: {tmp_path / "data"}
reliability: {{retries: 0}}
models:
  - {{name: {MODEL}, provider: openai, base_url: "{upstream[1].url}/v1", api_key: {API_KEY},
     on_disconnect: finish}}
""")
    ports = free_port(), free_port()
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
        "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL) for port in ports]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        await wait_healthy(a)
        await wait_healthy(b)
        yield a, b, prefix
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


async def _until(condition, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_repeat_on_another_process_waits_and_replays(fleet, upstream) -> None:
    a, b, prefix = fleet
    fake = upstream[0]
    fake.delay = 1.5
    job_id = str(uuid.uuid4())
    body = {"model": MODEL, "prompt": "a windmill"}
    async with httpx.AsyncClient(timeout=30, headers={"X-Job-Id": job_id}) as client:
        first = asyncio.create_task(client.post(f"{a}/v1/images/generations", json=body))
        await _until(lambda: fake.requests)  # running on A
        repeat = await client.post(f"{b}/v1/images/generations", json=body)
        original = await first
        other = await client.post(f"{b}/v1/images/generations",
                                  json={**body, "prompt": "a barn"})
    redis = aioredis.from_url(REDIS_URL)
    try:
        claim = await redis.hgetall(f"{prefix}:claim:{job_id}")
    finally:
        await redis.aclose()
    assert original.status_code == repeat.status_code == 200
    assert repeat.content == original.content and repeat.headers["idempotent-replayed"] == "true"
    assert len(fake.requests) == 1
    assert claim[b"answer"] and claim[b"free"] == b"", "kept in Redis, holding the id"
    assert other.status_code == 409 and other.json()["error"]["code"] == "job_id_conflict"
    assert len(await asyncio.to_thread(usage_rows, a, job_id)) == 1, "one charge, fleet-wide"


async def test_a_failure_worth_retrying_frees_the_id_for_every_process(fleet, upstream) -> None:
    a, b, _ = fleet
    fake = upstream[0]
    fake.mode, fake.status, fake.status_times = "status", 429, 1
    job_id = str(uuid.uuid4())
    body = {"model": MODEL, "prompt": "p"}
    async with httpx.AsyncClient(timeout=30, headers={"X-Job-Id": job_id}) as client:
        refused = await client.post(f"{a}/v1/images/generations", json=body)
        retried = await client.post(f"{b}/v1/images/generations", json=body)
    assert refused.status_code == 429 and retried.status_code == 200
    assert len(fake.requests) == 2


async def test_a_stream_dropped_on_one_process_re_attaches_on_the_other(fleet, upstream) -> None:
    a, b, _ = fleet
    fake = upstream[0]
    fake.event_gap = 0.4
    job_id = str(uuid.uuid4())
    body = {"model": MODEL, "prompt": "p", "stream": True, "partial_images": 2}
    async with httpx.AsyncClient(timeout=30) as client:
        received = b""
        async with client.stream("POST", f"{a}/v1/images/generations", json=body,
                                 headers={"X-Job-Id": job_id}) as response:
            async for chunk in response.aiter_bytes():
                received += chunk
                if b"\n\n" in received:
                    break
        assert [n for n, _, _ in frames(received)] == [1]
        rest = await client.get(f"{b}/v1/images/jobs/{job_id}/events",
                                headers={"Last-Event-ID": "1"})
    assert [(n, event) for n, event, _ in frames(rest.content)] == [
        (2, "image_generation.partial_image"), (3, "image_generation.completed")]
    assert len(fake.requests) == 1 and fake.completed_sent
