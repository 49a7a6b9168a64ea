"""Seed 003, an AI gateway's ``/v1/images/generations`` (capability ``images``; URLs by
default; ComfyUI-style progress on Socket.IO ``/image-progress``): its cURL example, only the
host and the key changed."""

from __future__ import annotations

import uuid

import httpx

from tests.e2e.conformance.conftest import KEY, Conformance
from tests.support.progress_client import Watcher

SAMPLE = {
    "model": "dall-e-3",
    "prompt": "A watercolor painting of a mountain lake at sunrise",
    "size": "1024x1024",
    "quality": "hd",
    "n": 1,
}


def test_sample_request_answers_with_urls(conformance: Conformance) -> None:
    response = conformance.post("/v1/images/generations", SAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["created"], int)
    item = body["data"][0]
    assert item["url"].startswith("http") and item["revised_prompt"]
    assert httpx.get(item["url"]).status_code == 200


def test_b64_json_when_asked(conformance: Conformance) -> None:
    body = conformance.post("/v1/images/generations",
                            {**SAMPLE, "response_format": "b64_json", "style": "natural"}).json()
    item = body["data"][0]
    assert item["b64_json"] and item["revised_prompt"] and "url" not in item


async def test_progress_on_image_progress(conformance: Conformance) -> None:
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(conformance.gateway.url, token=KEY)
    try:
        await watcher.subscribe(job_id)
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(
                f"{conformance.gateway.url}/v1/images/generations", json=SAMPLE,
                headers={"Authorization": f"Bearer {KEY}", "X-Job-Id": job_id})
        assert response.status_code == 200
        final = await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    assert final["percent"] == 100 and final["job_id"] == job_id
