"""A detached (async) job's end is recorded with its result: until its answer is stored its
snapshot is not terminal, and it keeps its lease (if its process died then, the fleet would
end it instead of leaving it running for ever)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import new_key
from proxy.service.gateway import Gateway
from proxy.service.images import ImageService
from proxy.service.kept import Attached
from proxy.service.replies import Order
from tests.support.gateways import gateway_config

TOKEN, TOKEN_HASH = new_key()


async def test_the_end_waits_for_the_result_and_the_lease_for_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = Gateway.from_config(gateway_config(f"""
data_dir: {tmp_path}
keys: [{{name: capped, key_sha256: {TOKEN_HASH}, concurrent_jobs: 1}}]
models: [{{name: local, provider: local}}]
"""))
    await gateway.start()
    stored = asyncio.Event()
    try:
        service = ImageService(gateway)
        key = gateway.keys.authenticate(TOKEN)
        assert key is not None
        put = gateway.results.put

        async def held_put(job_id: str, result: dict[str, Any]) -> None:
            await stored.wait()
            await put(job_id, result)

        monkeypatch.setattr(gateway.results, "put", held_put)
        job_id = str(uuid.uuid4())
        reply = await service.submit(key, Order(job_id=job_id, detached=True, fields={
            "model": "local", "prompt": "p", "size": "64x64", "quality": "low"}))
        assert isinstance(reply, Attached)
        feed = reply.kept.run.feed
        assert feed is not None
        await asyncio.wait_for(feed.finished(), 30)  # the job itself is over
        await asyncio.sleep(0.2)
        waiting = await service.job_view(key, job_id)
        assert waiting is not None
        assert waiting["status"] == "running" and "result" not in waiting
        assert [lease.job_id for lease in gateway.leases.held.values()] == [job_id]

        stored.set()
        await asyncio.wait_for(asyncio.shield(reply.kept.answer), 30)
        done = await service.job_view(key, job_id)
        assert done is not None
        assert done["status"] == "succeeded" and done["percent"] == 100
        assert done["result"]["data"][0]["b64_json"]
        assert not gateway.leases.held
    finally:
        stored.set()
        await gateway.aclose()
