"""An async job (``Prefer: respond-async``) needs the shared store to be accepted: while Redis is
away a new one gets 503 ``store_unavailable`` with ``retry-after`` (never a 500), and once Redis
answers again it is accepted and finishes with its result."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.e2e.fleet.conftest import FREE, FREE_HASH, Fleet, fleet_yaml
from tests.support.redis_server import RedisServer

BODY = {"model": "local", "prompt": "p", "size": "64x64", "quality": "low"}


async def test_async_jobs_are_refused_during_an_outage_and_accepted_after(
        own_redis: RedisServer, fleet: Fleet, tmp_path: Path) -> None:
    (gateway,) = await fleet(fleet_yaml(own_redis, tmp_path / "data", f"""
fleet: {{lease_seconds: 1, store_timeout: 0.2}}
keys: [{{name: free, key_sha256: {FREE_HASH}}}]
models: [{{name: local, provider: local}}]
"""), 1)
    headers = {"Authorization": f"Bearer {FREE}", "Prefer": "respond-async"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as http:
        own_redis.kill()
        refused = [await http.post("/v1/images/generations", json=BODY) for _ in range(3)]
        own_redis.start()
        back = time.monotonic()
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() - back < 5, "/readyz stays 503 after Redis is back"
            await asyncio.sleep(0.1)
        accepted = await http.post("/v1/images/generations", json=BODY)
        assert accepted.status_code == 202, accepted.text
        for _ in range(200):
            job = (await http.get(accepted.headers["location"])).json()
            if job["status"] != "running" and job["status"] != "queued":
                break
            await asyncio.sleep(0.05)
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "store_unavailable"
    assert job["status"] == "succeeded" and job["result"]["data"][0]["b64_json"]
    assert "Traceback" not in gateway.logged()
