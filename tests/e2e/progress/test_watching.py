"""Watching on real servers: a room of many subscribers (delivered in slices) gets every update;
a subscriber who comes after the end still hears it as a `progress` event (memory and Redis);
a late subscriber to a backend without signal gets an estimate in its ack and estimates after;
and with Redis, a subscriber on one process that joins a job already running on another starts
receiving it, while plain-HTTP reads on either process follow the job to its end."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import redis.asyncio as aioredis

from proxy.http.socket import SLICE
from tests.support.clients import async_sdk
from tests.support.fakes.openai_upstream import FakeOpenAI, openai_models_yaml
from tests.support.progress_client import Watcher, assert_well_formed
from tests.support.stack import upstream_and_gateway

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")


async def test_every_subscriber_of_a_big_room_gets_every_update(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    watchers = [Watcher() for _ in range(SLICE + 8)]  # more than one slice of the fan-out
    try:
        await asyncio.gather(*(w.connect(local_gateway.url) for w in watchers))
        await asyncio.gather(*(w.subscribe(job_id) for w in watchers))
        await async_sdk(local_gateway).images.generate(
            model="local", prompt="p", size="64x64", extra_headers={"X-Job-Id": job_id})
        await asyncio.gather(*(w.wait_for(lambda e: e["status"] == "succeeded")
                               for w in watchers))
    finally:
        await asyncio.gather(*(w.close() for w in watchers))
    seqs = [e["seq"] for e in watchers[0].events]
    assert seqs[0] == 0 and len(seqs) > 3
    for watcher in watchers:
        assert [e["seq"] for e in watcher.events] == seqs
        assert_well_formed(watcher.events)


async def test_a_late_subscriber_to_a_silent_backend_gets_estimates() -> None:
    def yaml(url: str) -> str:
        return openai_models_yaml(f"{url}/v1", expected_seconds=4)

    job_id = str(uuid.uuid4())
    with upstream_and_gateway(FakeOpenAI(delay=3.0), yaml) as (_, server):
        request = asyncio.create_task(async_sdk(server).images.generate(
            model="openai/gpt-image-1", prompt="p", extra_headers={"X-Job-Id": job_id}))
        await asyncio.sleep(1.5)  # nobody watches: no estimates are made meanwhile
        watcher = Watcher()
        await watcher.connect(server.url)
        try:
            ack = (await watcher.subscribe(job_id))["snapshot"]
            await request
            await watcher.wait_for(lambda e: e["status"] == "succeeded")
        finally:
            await watcher.close()
    # The ack computed the estimate at that moment; the ticker went on from there.
    assert ack["estimated"] and ack["status"] == "running" and 0 < ack["percent"] < 100
    assert any(e["estimated"] for e in watcher.events)
    assert watcher.events[-1]["estimated"] is False
    assert_well_formed([ack, *watcher.events])


async def test_redis_late_subscriber_on_another_process(start_gateway) -> None:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    config = (f"redis_url: {REDIS_URL}\nredis_prefix: {prefix}\n"
              "models: [{name: local/slow, provider: local, step_delay: 0.1}]\n")
    job_id = str(uuid.uuid4())
    try:
        with start_gateway(config) as a, start_gateway(config) as b:
            async with httpx.AsyncClient(timeout=60) as http:
                request = asyncio.create_task(http.post(
                    f"{b.url}/v1/images/generations", headers={"X-Job-Id": job_id},
                    json={"model": "local/slow", "prompt": "p", "size": "64x64",
                          "quality": "high"}))
                running = None
                for _ in range(100):  # read on A while it runs on B: at most a sync behind
                    running = (await http.get(f"{a.url}/v1/images/jobs/{job_id}")).json()
                    if running.get("percent", 0) > 0:
                        break
                    await asyncio.sleep(0.05)
                assert running is not None and running["status"] == "running"
                watcher = Watcher()
                await watcher.connect(a.url)
                try:
                    ack = (await watcher.subscribe(job_id))["snapshot"]
                    assert (await request).status_code == 200
                    await watcher.wait_for(lambda e: e["status"] == "succeeded")
                finally:
                    await watcher.close()
                final = (await http.get(f"{a.url}/v1/images/jobs/{job_id}")).json()
    finally:
        client = aioredis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert final["status"] == "succeeded" and final["percent"] == 100
    running_events = [e for e in watcher.events if e["status"] == "running"]
    assert len(running_events) >= 5, "the owner noticed the watcher within a sync"
    assert_well_formed([ack, *watcher.events])


# -- a subscriber who comes after the end -----------------------------------------------------


async def _ended_job_heard_only_from_progress_events(url: str, job_id: str) -> None:
    """Subscribe to a job that already ended: the ack holds its terminal snapshot, and the same
    snapshot also comes as a ``progress`` event (a client listening only to those never hangs)."""
    watcher = Watcher()
    await watcher.connect(url)
    try:
        ack = (await watcher.subscribe(job_id))["snapshot"]
        heard = await watcher.wait_for(lambda e: e["status"] == "succeeded", timeout=10)
    finally:
        await watcher.close()
    assert ack["status"] == "succeeded" and ack["percent"] == 100
    assert heard == ack
    assert watcher.events == [ack], "one terminal event, nothing after it"


async def test_a_subscriber_after_the_end_still_gets_a_terminal_progress_event(
        local_gateway) -> None:
    job_id = str(uuid.uuid4())
    await async_sdk(local_gateway).images.generate(
        model="local", prompt="p", size="64x64", extra_headers={"X-Job-Id": job_id})
    await _ended_job_heard_only_from_progress_events(local_gateway.url, job_id)


async def test_redis_a_subscriber_after_the_end_on_another_process_gets_a_progress_event(
        start_gateway) -> None:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    config = (f"redis_url: {REDIS_URL}\nredis_prefix: {prefix}\n"
              "models: [{name: local, provider: local}]\n")
    job_id = str(uuid.uuid4())
    try:
        with start_gateway(config) as a, start_gateway(config) as b:
            async with httpx.AsyncClient(timeout=60) as http:
                posted = await http.post(
                    f"{b.url}/v1/images/generations", headers={"X-Job-Id": job_id},
                    json={"model": "local", "prompt": "p", "size": "64x64"})
                assert posted.status_code == 200, posted.text
                ended = None
                for _ in range(100):  # its end is stored on B's way out: read it on A
                    ended = (await http.get(f"{a.url}/v1/images/jobs/{job_id}")).json()
                    if ended.get("status") == "succeeded":
                        break
                    await asyncio.sleep(0.05)
                assert ended is not None and ended["status"] == "succeeded"
            await _ended_job_heard_only_from_progress_events(a.url, job_id)
            await _ended_job_heard_only_from_progress_events(b.url, job_id)
    finally:
        client = aioredis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
