"""Async jobs (``Prefer: respond-async``) of a fleet are durable: they wait in a queue every
instance shares, and a job whose runner is killed (SIGKILL) is taken over by another instance,
which runs it if its upstream call never began, and fails it ``instance_lost`` (saying the
upstream may have been called) if it had: a paid upstream is never called twice for one job."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from tests.e2e.fleet.conftest import (
    CAPPED,
    CAPPED_HASH,
    FREE,
    FREE_HASH,
    QUEUE,
    Fleet,
    fleet_yaml,
    queue_holders,
    runner_of,
)
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.redis_server import RedisServer

LEASE = 1.0
PAID = "openai/gpt-image-1"
TERMINAL = ("succeeded", "failed", "cancelled")


def config(redis: RedisServer, tmp_path: Path, upstream: str,
           fleet: str = f"{{lease_seconds: {LEASE}, store_timeout: 0.2}}") -> str:
    return fleet_yaml(redis, tmp_path / "data", f"""
fleet: {fleet}
keys:
  - {{name: capped, key_sha256: {CAPPED_HASH}, concurrent_jobs: 1}}
  - {{name: free, key_sha256: {FREE_HASH}}}
models:
  - {{name: local, provider: local}}
  - {{name: local/slow, provider: local, step_delay: 1.0}}
  - {{name: local/steps, provider: local, step_delay: 0.1}}
  - name: {PAID}
    provider: openai
    base_url: {upstream}
    api_key: {API_KEY}
    timeout: {{connect: 5, first_byte: 600, total: 900}}
""")


async def stream_entries(redis: RedisServer) -> list[Any]:
    """Every entry the queue's stream holds now."""
    client = aioredis.from_url(redis.url)
    try:
        return await client.xrange(QUEUE)
    finally:
        await client.aclose()


async def submit(http: httpx.AsyncClient, url: str, model: str, **more: Any) -> str:
    """Post an async job; the URL to poll it at (on the same instance)."""
    size = "1024x1024" if model == PAID else "64x64"
    response = await http.post(f"{url}/v1/images/generations", headers={
        "Prefer": "respond-async"}, json={"model": model, "prompt": "p", "size": size,
                                          "quality": "low", **more})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued", response.text
    return response.headers["location"]


async def read(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The job at ``url``. A 503 ``store_unavailable`` (the documented answer while Redis is
    slower than ``store_timeout``, as it can be on a loaded test machine) is asked again."""
    for _ in range(40):
        response = await http.get(url)
        if response.status_code != 503:
            break
        assert response.json()["error"]["code"] == "store_unavailable", response.text
        await asyncio.sleep(0.05)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def poll(http: httpx.AsyncClient, url: str, done: Any, limit: float = 20) -> dict[str, Any]:
    """GET ``url`` until ``done(job)``; the last snapshot read."""
    deadline = time.monotonic() + limit
    while True:
        job = await read(http, url)
        if done(job) or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.05)


async def test_a_job_its_killed_runner_had_not_started_is_run_by_another_instance(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path,
        fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, upstream = fake_openai
    yaml = config(own_redis, tmp_path, upstream)
    (a,) = await fleet(yaml, 1)
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {CAPPED}"}) \
            as http:
        # The key runs one job at a time: the second waits on A, taken but not started.
        first = await submit(http, a.url, "local/slow")
        assert (await poll(http, f"{a.url}{first}",
                           lambda j: (j.get("step") or 0) >= 1))["status"] == "running"
        second = await submit(http, a.url, PAID)
        for _ in range(200):
            held = await queue_holders(own_redis)
            if len(held) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(set(held.values())) == 1, held  # both held by A's runners
        waiting = await read(http, f"{a.url}{second}")
        assert waiting["status"] == "queued" and not fake.requests, waiting
        # What the queue holds names the key; it holds no secret.
        entries = str(await stream_entries(own_redis))
        assert "capped" in entries and CAPPED not in entries and API_KEY not in entries

        a.kill()
        (b,) = await fleet(yaml, 1)
        ran = await poll(http, f"{b.url}{second}", lambda j: j["status"] in TERMINAL)
        lost = await poll(http, f"{b.url}{first}", lambda j: j["status"] in TERMINAL)
    assert ran["status"] == "succeeded", ran
    assert ran["result"]["data"][0]["b64_json"]
    assert len(fake.requests) == 1, "the upstream was called more than once"
    # The first job had begun (the local renderer counts as an upstream): failed, not rerun.
    assert (lost["status"], lost["error"]["code"]) == ("failed", "instance_lost"), lost
    assert "may have been called" in lost["error"]["message"]
    assert "Traceback" not in b.logged()


async def test_a_job_whose_upstream_call_began_fails_instance_lost_and_is_not_run_twice(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path,
        fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, upstream = fake_openai
    fake.mode = "hang"  # the call begins and never ends
    gateways = await fleet(config(own_redis, tmp_path, upstream), 2)
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {FREE}"}) \
            as http:
        where = await submit(http, gateways[0].url, PAID)
        for _ in range(200):
            if fake.requests:
                break
            await asyncio.sleep(0.05)
        assert len(fake.requests) == 1
        runner = await runner_of(own_redis, gateways, where.rsplit("/", 1)[1])
        (other,) = [g for g in gateways if g is not runner]
        # The take-over waits a lease and half a second after an instance starts.
        await asyncio.sleep(LEASE + 0.5)

        runner.kill()
        killed = time.monotonic()
        job = await poll(http, f"{other.url}{where}", lambda j: j["status"] in TERMINAL,
                         limit=3 * LEASE)
        ended = time.monotonic() - killed
        await asyncio.sleep(LEASE)  # a take-over that would run it again has had its chance
        later = await read(http, f"{other.url}{where}")
    assert (job["status"], job["error"]["code"]) == ("failed", "instance_lost"), job
    assert "may have been called" in job["error"]["message"]
    assert ended <= 2 * LEASE, f"ended {ended:.2f} s after the kill"
    assert len(fake.requests) == 1, "the paid upstream was called twice"
    assert (later["status"], later["seq"]) == ("failed", job["seq"])


async def test_many_async_jobs_across_two_instances_never_show_succeeded_without_result(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path,
        fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, upstream = fake_openai
    fake.delay = 0.3  # an upstream answers in its own time
    # Nothing is killed here: the default lease and store timeout (a loaded test machine
    # answers slower than a production Redis).
    gateways = await fleet(config(own_redis, tmp_path, upstream, fleet="{}"), 2)
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {FREE}"}) \
            as http:
        async def one(i: int) -> dict[str, Any]:
            accepted_on, read_on = gateways[i % 2], gateways[(i + 1) % 2]
            where = await submit(http, accepted_on.url, "local/steps" if i % 3 else PAID)
            while True:  # polled on the other instance, back to back
                response = await http.get(f"{read_on.url}{where}")
                if response.status_code == 503:  # Redis slower than store_timeout: documented
                    assert response.json()["error"]["code"] == "store_unavailable"
                    continue
                assert response.status_code == 200, response.text
                job = response.json()
                seen.append(job)
                if job["status"] in TERMINAL:
                    return job

        ended = await asyncio.gather(*(one(i) for i in range(24)))
    assert [job["status"] for job in ended] == ["succeeded"] * 24, ended
    assert len(seen) >= 72, f"only {len(seen)} polls: not a tight loop"
    assert any(job["status"] in ("queued", "running") for job in seen)
    bad = [job for job in seen if job["status"] == "succeeded"
           and not job.get("result", {}).get("data")]
    assert not bad, f"{len(bad)} of {len(seen)} polls saw succeeded without its result"
    for gateway in gateways:
        assert "Traceback" not in gateway.logged()
    assert await stream_entries(own_redis) == []  # every finished job's entry is gone


async def test_a_new_async_job_while_redis_does_not_answer_is_503_never_500(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path,
        fake_openai: tuple[FakeOpenAI, str]) -> None:
    _, upstream = fake_openai
    (gateway,) = await fleet(config(own_redis, tmp_path, upstream), 1)
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {FREE}"}) \
            as http:
        own_redis.freeze()
        try:
            refused = [await http.post(f"{gateway.url}/v1/images/generations",
                                       headers={"Prefer": "respond-async"},
                                       json={"model": "local", "prompt": "p"})
                       for _ in range(3)]
        finally:
            own_redis.thaw()
        back = time.monotonic()
        while (await http.get(f"{gateway.url}/readyz")).status_code != 200:
            assert time.monotonic() - back < 5, "/readyz stays 503 after Redis is back"
            await asyncio.sleep(0.1)
        where = await submit(http, gateway.url, "local")
        job = await poll(http, f"{gateway.url}{where}", lambda j: j["status"] in TERMINAL)
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "store_unavailable"
    assert job["status"] == "succeeded" and job["result"]["data"][0]["b64_json"]
    assert "Traceback" not in gateway.logged()


async def test_a_repeated_async_request_under_its_job_id_is_one_job_on_any_instance(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path,
        fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, upstream = fake_openai
    fake.delay = 0.5  # still running when the repeat comes
    # No instance dies here: a lease and a store timeout that a loaded machine's Redis keeps
    # (with 0.2 s, the job could wait out 20 s of store timeouts in the suite's busiest minute).
    gateways = await fleet(config(own_redis, tmp_path, upstream,
                                  fleet="{lease_seconds: 6, store_timeout: 1.0}"), 2)
    job_id = str(uuid.uuid4())
    body = {"model": PAID, "prompt": "p", "size": "1024x1024", "quality": "low"}
    headers = {"Prefer": "respond-async", "X-Job-Id": job_id}
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {FREE}"}) \
            as http:
        first = await http.post(f"{gateways[0].url}/v1/images/generations", headers=headers,
                                json=body)
        repeat = await http.post(f"{gateways[1].url}/v1/images/generations", headers=headers,
                                 json=body)
        done = await poll(http, f"{gateways[1].url}/v1/images/jobs/{job_id}",
                          lambda j: j["status"] in TERMINAL)
        assert done["status"] == "succeeded", (done, *(g.logged()[-4000:] for g in gateways))
        again = await http.post(f"{gateways[0].url}/v1/images/generations", headers=headers,
                                json=body)
        other = await http.post(f"{gateways[1].url}/v1/images/generations", headers=headers,
                                json={**body, "prompt": "another"})
    assert [r.status_code for r in (first, repeat, again)] == [202, 202, 202], repeat.text
    assert {r.json()["id"] for r in (first, repeat, again)} == {job_id}
    assert repeat.headers["idempotent-replayed"] == "true"
    assert again.json()["status"] == "succeeded"
    assert done["status"] == "succeeded" and done["result"]["data"][0]["b64_json"]
    assert len(fake.requests) == 1, "one job, one upstream call"
    assert other.status_code == 409 and other.json()["error"]["code"] == "job_id_conflict"
