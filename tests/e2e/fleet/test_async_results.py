"""An async job's end and its result are seen together: polled as tightly as a client can, many
async jobs never read ``succeeded`` without their ``result`` (nor ``failed`` without its
``error``), in one process (memory) and in a fleet (Redis), with images answered inline and
hosted (the slower answer to make)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.fleet.conftest import FREE, FREE_HASH, Fleet
from tests.support.redis_server import RedisServer

JOBS = 24


def config(tmp_path: Path, redis: RedisServer | None) -> str:
    store = "" if redis is None else f"redis_url: {redis.url}\nredis_prefix: async-results\n"
    return f"""{store}
data_dir: {tmp_path / "data"}
reliability: {{retries: 0, circuit_failures: 1000000}}
keys: [{{name: free, key_sha256: {FREE_HASH}}}]
models: [{{name: local, provider: local}}]
"""


async def poll_until_terminal(http: httpx.AsyncClient, url: str,
                              seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Poll ``url`` back to back until the job ends; every snapshot read goes into ``seen``."""
    while True:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        job = response.json()
        seen.append(job)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_succeeded_is_never_seen_without_its_result(
        shared: bool, own_redis: RedisServer, fleet: Fleet, tmp_path: Path) -> None:
    (gateway,) = await fleet(config(tmp_path, own_redis if shared else None), 1)
    headers = {"Authorization": f"Bearer {FREE}", "Prefer": "respond-async"}
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers=headers) as http:
        async def one(i: int) -> dict[str, Any]:
            body = {"model": "local", "prompt": f"p{i}", "size": "256x256", "quality": "low",
                    "response_format": "url" if i % 2 else "b64_json"}
            accepted = await http.post("/v1/images/generations", json=body)
            assert accepted.status_code == 202, accepted.text
            return await poll_until_terminal(http, accepted.headers["location"], seen)

        ended = await asyncio.gather(*(one(i) for i in range(JOBS)))
    assert [job["status"] for job in ended] == ["succeeded"] * JOBS
    # Each job is read back to back while it runs (how many times depends on the machine).
    assert len(seen) >= 3 * JOBS, f"only {len(seen)} polls: not a tight loop"
    running = [job for job in seen if job["status"] in ("queued", "running")]
    assert running, "no poll saw a job before its end"
    bad = [job["job_id"] for job in seen
           if (job["status"] == "succeeded" and not job.get("result", {}).get("data"))
           or (job["status"] == "failed" and "error" not in job)]
    assert not bad, f"{len(bad)} of {len(seen)} polls saw an end without its result"
    for job in ended:
        item = job["result"]["data"][0]
        assert item.get("url") or item.get("b64_json")
