"""An instance that was only cut off (its lease lapsed and another instance ended its job) and
renews again learns that its job was ended: it stops it, its client gets ``instance_lost``, and
it does not overwrite the ending the fleet recorded."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import orjson
import redis.asyncio as aioredis

from tests.support.gateways import GatewayFactory

REDIS_URL = os.environ.get("IMAGE_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/15")


async def test_a_job_reaped_elsewhere_stops_on_its_instance(start_gateway: GatewayFactory
                                                            ) -> None:
    prefix = f"image-proxy-test-{uuid.uuid4().hex[:12]}"
    job_id = str(uuid.uuid4())
    client = aioredis.from_url(REDIS_URL)
    try:
        with start_gateway(f"redis_url: {REDIS_URL}\nredis_prefix: {prefix}\n"
                           "fleet: {lease_seconds: 1, store_timeout: 0.2}\n"
                           "models: [{name: local/slow, provider: local, step_delay: 0.5}]\n"
                           ) as server:
            async with httpx.AsyncClient(timeout=30) as http:
                request = asyncio.create_task(http.post(
                    f"{server.url}/v1/images/generations", headers={"X-Job-Id": job_id},
                    json={"model": "local/slow", "prompt": "p", "size": "64x64"}))
                (token,) = await leased(client, prefix)
                ended = await reap_by_hand(client, prefix, token, job_id)
                response = await asyncio.wait_for(request, 5)
        stored = orjson.loads(await client.get(f"{prefix}:job:{job_id}"))
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "instance_lost"
    assert stored == ended, "the fleet's ending stands"


async def leased(client: aioredis.Redis, prefix: str) -> list[str]:
    for _ in range(100):
        tokens = await client.zrange(f"{prefix}:fleet:deadlines", 0, -1)
        if tokens:
            return [token.decode() for token in tokens]
        await asyncio.sleep(0.02)
    raise AssertionError("the job was never leased")


async def reap_by_hand(client: aioredis.Redis, prefix: str, token: str,
                       job_id: str) -> dict:
    """What another instance's reaper does to a lapsed lease: remove it, leave a tombstone,
    end the job's snapshot."""
    await asyncio.sleep(0.3)
    await client.zrem(f"{prefix}:fleet:deadlines", token)
    await client.set(f"{prefix}:fleet:lost:{token}", "1", px=60_000)
    snapshot = orjson.loads(await client.get(f"{prefix}:job:{job_id}"))
    snapshot.update(status="failed", seq=snapshot["seq"] + 1,
                    error={"message": "lost", "type": "server_error", "param": None,
                           "code": "instance_lost"})
    await client.set(f"{prefix}:job:{job_id}", orjson.dumps(snapshot), ex=60)
    return snapshot
