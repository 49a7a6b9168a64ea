"""Admin keys see every key's jobs, over ``GET /v1/images/jobs/{id}`` as over Socket.IO; other
keys see only their own (another key's job reads as unknown: 404)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.keys import ADMIN, ALICE, BOB, keys_config
from tests.support.progress_client import Watcher
from tests.support.stack import upstream_and_gateway


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def alices_jobs(client: httpx.AsyncClient) -> list[str]:
    """One attached job of alice's and one detached (async), both finished."""
    attached, detached = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"model": "local", "prompt": "p", "size": "64x64"}
    done = await client.post("/v1/images/generations", json=body,
                             headers={**as_key(ALICE), "X-Job-Id": attached})
    assert done.status_code == 200
    accepted = await client.post("/v1/images/generations", json=body, headers={
        **as_key(ALICE), "X-Job-Id": detached, "Prefer": "respond-async"})
    assert accepted.status_code == 202
    deadline = time.monotonic() + 30
    while (await client.get(f"/v1/images/jobs/{detached}", headers=as_key(ALICE))
           ).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return [attached, detached]


async def test_admins_see_every_keys_jobs_over_http_as_over_socketio() -> None:
    with upstream_and_gateway(FakeOpenAI(), lambda url: keys_config(f"{url}/v1")) as stack:
        url = stack.gateway.url
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            jobs = await alices_jobs(client)
            for job_id in jobs:
                path = f"/v1/images/jobs/{job_id}"
                own = await client.get(path, headers=as_key(ALICE))
                admin = await client.get(path, headers=as_key(ADMIN))
                assert own.status_code == admin.status_code == 200
                assert admin.json() == own.json()
                assert (await client.get(path, headers=as_key(BOB))).status_code == 404
            assert admin.json()["result"]["data"], "the detached job's answer too"
            by_http = (await client.get(f"/v1/images/jobs/{jobs[0]}",
                                        headers=as_key(ADMIN))).json()
        watcher = Watcher()
        await watcher.connect(url, ADMIN)
        try:
            ack = await watcher.subscribe(jobs[0])
        finally:
            await watcher.close()
        assert ack["ok"] and ack["snapshot"] == by_http
