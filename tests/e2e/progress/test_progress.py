"""Live progress on Socket.IO ``/image-progress`` and job snapshots over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest
import socketio

from proxy.auth import new_key
from tests.support.clients import async_sdk
from tests.support.fakes.openai_upstream import FakeOpenAI, openai_models_yaml
from tests.support.progress_client import Watcher, assert_well_formed
from tests.support.stack import upstream_and_gateway


async def test_subscribe_first_then_post_json(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(local_gateway.url)
    try:
        ack = await watcher.subscribe(job_id)
        assert ack == {"ok": True, "job_id": job_id, "snapshot": None}
        raw = await async_sdk(local_gateway).images.with_raw_response.generate(
            model="local", prompt="a red apple", size="256x256", quality="high",
            extra_headers={"X-Job-Id": job_id})
        assert raw.headers["x-request-id"] == job_id
        assert (raw.http_response.json())["id"] == job_id
        final = await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    events = watcher.events
    assert_well_formed(events)
    assert final["percent"] == 100 and final["job_id"] == job_id and final["model"] == "local"
    running = [e for e in events if e["status"] == "running"]
    assert len(running) >= 10, "one update per rendering step (24 at high quality)"
    assert running[-1]["total_steps"] == 24 and not running[-1]["estimated"]
    assert any(e["eta_s"] is not None for e in running)


async def test_late_subscriber_gets_the_current_snapshot(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    client = async_sdk(local_gateway)
    request = asyncio.create_task(client.images.generate(
        model="local/slow", prompt="night city", size="128x128", quality="low",
        extra_headers={"X-Job-Id": job_id}))
    async with httpx.AsyncClient(base_url=local_gateway.url) as http:
        for _ in range(200):  # until the job has visibly started (bounded: ~10 s)
            snap = (await http.get(f"/v1/images/jobs/{job_id}")).json()
            if snap.get("percent", 0) > 0:
                break
            await asyncio.sleep(0.05)
    watcher = Watcher()
    await watcher.connect(local_gateway.url)
    try:
        ack = await watcher.subscribe(job_id)
        snapshot = ack["snapshot"]
        assert snapshot["status"] == "running" and 0 < snapshot["percent"] < 100
        await request
        final = await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    assert final["seq"] > snapshot["seq"]
    assert_well_formed([snapshot, *watcher.events])


async def test_job_snapshot_over_http(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    await async_sdk(local_gateway).images.generate(
        model="local", prompt="p", size="64x64", extra_headers={"X-Job-Id": job_id})
    async with httpx.AsyncClient(base_url=local_gateway.url) as http:
        snap = (await http.get(f"/v1/images/jobs/{job_id}")).json()
        assert snap["status"] == "succeeded" and snap["percent"] == 100
        assert "owner" not in snap
        missing = await http.get(f"/v1/images/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert (await http.get("/v1/images/jobs/not-a-uuid")).status_code == 404


async def test_job_id_header_is_validated_and_names_one_request(local_gateway) -> None:
    client = async_sdk(local_gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model="local", prompt="p",
                                     extra_headers={"X-Job-Id": "job-1"})
    assert caught.value.param == "x-job-id"
    job_id = str(uuid.uuid4())
    first = await client.images.generate(model="local", prompt="p", size="64x64",
                                         extra_headers={"X-Job-Id": job_id})
    # The same request again is a repeat: the same answer, not a second job.
    again = await client.images.with_raw_response.generate(
        model="local", prompt="p", size="64x64", extra_headers={"X-Job-Id": job_id})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().data[0].b64_json == first.data[0].b64_json
    # Another request under a used id is a conflict, which the SDKs must not retry.
    with pytest.raises(openai.ConflictError) as caught:
        await client.images.generate(model="local", prompt="q", size="64x64",
                                     extra_headers={"X-Job-Id": job_id})
    assert caught.value.code == "job_id_conflict"
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_a_request_refused_before_it_starts_fails_the_watched_job(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(local_gateway.url)
    try:
        await watcher.subscribe(job_id)
        with pytest.raises(openai.BadRequestError):
            await async_sdk(local_gateway).images.generate(
                model="local", prompt="p", size="3x3", extra_headers={"X-Job-Id": job_id})
        failed = await watcher.wait_for(lambda e: e["status"] == "failed")
    finally:
        await watcher.close()
    assert failed["error"]["param"] == "size"


async def test_client_disconnect_cancels_a_json_job(local_gateway) -> None:
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(local_gateway.url)
    try:
        await watcher.subscribe(job_id)
        http = httpx.AsyncClient(timeout=60)
        request = asyncio.create_task(http.post(
            f"{local_gateway.url}/v1/images/generations", headers={"X-Job-Id": job_id},
            json={"model": "local/slow", "prompt": "p", "size": "128x128", "quality": "high"}))
        await watcher.wait_for(lambda e: e["percent"] > 0)
        request.cancel()  # drops the connection, as a browser tab closing would
        await http.aclose()
        cancelled = await watcher.wait_for(lambda e: e["status"] == "cancelled")
    finally:
        await watcher.close()
    assert cancelled["percent"] < 100
    assert_well_formed(watcher.events)


async def test_estimated_progress_for_a_backend_without_signal() -> None:
    def yaml(url: str) -> str:
        return openai_models_yaml(f"{url}/v1", expected_seconds=4)

    # A non-streamed OpenAI call is silent until the image is done.
    job_id = str(uuid.uuid4())
    with upstream_and_gateway(FakeOpenAI(delay=3.0), yaml) as (_, server):
        watcher = Watcher()
        await watcher.connect(server.url)
        try:
            await watcher.subscribe(job_id)
            await async_sdk(server).images.generate(model="openai/gpt-image-1", prompt="p",
                                                    extra_headers={"X-Job-Id": job_id})
            await watcher.wait_for(lambda e: e["status"] == "succeeded")
        finally:
            await watcher.close()
    estimated = [e for e in watcher.events if e["estimated"]]
    assert len(estimated) >= 2, "about one estimate per second while the upstream is silent"
    assert all(0 < e["percent"] < 100 and e["status"] == "running" for e in estimated)
    assert estimated[0]["eta_s"] is not None
    assert watcher.events[-1]["estimated"] is False
    assert_well_formed(watcher.events)


async def test_openai_stream_reports_progress_from_partial_images(openai_gateway) -> None:
    _, server = openai_gateway
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(server.url)
    try:
        await watcher.subscribe(job_id)
        stream = await async_sdk(server).images.generate(
            model="openai/gpt-image-1", prompt="p", stream=True, partial_images=3,
            extra_headers={"X-Job-Id": job_id})
        async for _ in stream:
            pass
        await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    real = [e["percent"] for e in watcher.events if e["status"] == "running" and e["step"]]
    assert real == [25.0, 50.0, 75.0]
    assert_well_formed(watcher.events)


KEY_A, HASH_A = new_key()
KEY_B, HASH_B = new_key()
KEYED = f"""
keys:
  - {{name: alice, key_sha256: {HASH_A}}}
  - {{name: bob, key_sha256: {HASH_B}}}
models: [{{name: local, provider: local}}]
"""


async def test_keys_guard_sockets_and_jobs(start_gateway) -> None:
    with start_gateway(KEYED) as server:
        for token in ("wrong", None):
            refused = Watcher()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(server.url, token=token)

        job_id = str(uuid.uuid4())
        alice, bob = Watcher(), Watcher()
        await alice.connect(server.url, token=KEY_A)
        await bob.connect(server.url, token=KEY_B)
        try:
            assert (await bob.subscribe(job_id))["snapshot"] is None
            await alice.subscribe(job_id)
            client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY_A,
                                        max_retries=0)
            await client.images.generate(model="local", prompt="p", size="64x64",
                                         extra_headers={"X-Job-Id": job_id})
            await alice.wait_for(lambda e: e["status"] == "succeeded")
            # Bob watched the same id all along and heard nothing; now that the job exists,
            # watching it is refused outright.
            assert bob.events == []
            refused = await bob.subscribe(job_id)
            assert refused["ok"] is False and refused["error"]["code"] == "job_forbidden"
            assert (await alice.subscribe(job_id))["snapshot"]["status"] == "succeeded"
        finally:
            await alice.close()
            await bob.close()

        async with httpx.AsyncClient(base_url=server.url) as http:
            url = f"/v1/images/jobs/{job_id}"
            assert (await http.get(url, headers={"authorization": f"Bearer {KEY_B}"})
                    ).status_code == 404
            assert (await http.get(url, headers={"authorization": f"Bearer {KEY_A}"})
                    ).status_code == 200
            anonymous = await http.post("/v1/images/generations",
                                        json={"model": "local", "prompt": "p"})
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["code"] == "invalid_api_key"
