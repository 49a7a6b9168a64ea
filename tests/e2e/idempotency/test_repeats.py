"""A repeat of a request under its job id (the SDK's retry after a lost answer, a duplicate
sent at the same time) makes one upstream call and one charge, and gets the same answer byte for
byte: the same images, the same cost. Another key never reaches someone else's job."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest

from tests.e2e.idempotency.conftest import MODEL, frames, gateway_yaml, usage_rows, without_times
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.keys import ALICE, ALICE_HASH, BOB, BOB_HASH
from tests.support.stack import upstream_and_gateway

BODY = {"model": MODEL, "prompt": "a lighthouse at dusk", "size": "1024x1024"}


def test_a_sequential_repeat_replays_the_answer_byte_for_byte(tmp_path) -> None:
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/v1/images/generations"
        first = httpx.post(url, json=BODY, headers={"X-Job-Id": job_id}, timeout=30)
        again = httpx.post(url, json=BODY, headers={"X-Job-Id": job_id}, timeout=30)
        rows = usage_rows(stack.gateway.url, job_id)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content, "the same images, cost, usage, id, created"
    assert first.json()["cost"] > 0
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(stack.fake.requests) == 1
    assert len(rows) == 1 and rows[0]["status"] == "succeeded", "one charge"


async def test_concurrent_duplicates_share_one_upstream_call(tmp_path) -> None:
    with upstream_and_gateway(FakeOpenAI(delay=0.8), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        client = openai.AsyncOpenAI(base_url=f"{stack.gateway.url}/v1", api_key="unused",
                                    max_retries=2, timeout=30)
        answers = await asyncio.gather(*(client.images.generate(
            **BODY, extra_headers={"X-Job-Id": job_id}) for _ in range(3)))
        rows = await asyncio.to_thread(usage_rows, stack.gateway.url, job_id)
    assert len(stack.fake.requests) == 1
    assert len({answer.data[0].b64_json for answer in answers}) == 1
    assert {answer.model_extra["cost"] for answer in answers} == {rows[0]["cost"]}
    assert len(rows) == 1


def test_hosted_images_are_replayed_at_the_same_urls(tmp_path) -> None:
    """The root mount answers with URLs: the images are stored once, the repeat points at the
    same files."""
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/images/generations"
        body = {**BODY, "model": "openai/dall-e-3", "prompt": "a fox"}
        first = httpx.post(url, json=body, headers={"X-Job-Id": job_id}, timeout=30)
        again = httpx.post(url, json=body, headers={"X-Job-Id": job_id}, timeout=30)
        image = httpx.get(again.json()["data"][0]["url"], timeout=30)
    assert first.json()["data"][0]["url"].startswith("http")
    assert again.content == first.content and image.status_code == 200
    assert len(stack.fake.requests) == 1


def test_a_repeated_stream_replays_the_same_events(tmp_path) -> None:
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/v1/images/generations"
        body = {**BODY, "stream": True, "partial_images": 2}
        first = httpx.post(url, json=body, headers={"X-Job-Id": job_id}, timeout=30)
        again = httpx.post(url, json=body, headers={"X-Job-Id": job_id}, timeout=30)
    live, replayed = frames(first.content), frames(again.content)
    assert [(n, event) for n, event, _ in live] == [
        (1, "image_generation.partial_image"), (2, "image_generation.partial_image"),
        (3, "image_generation.completed")]
    assert [without_times(f) for f in replayed] == [without_times(f) for f in live]
    assert len(stack.fake.requests) == 1


def test_another_key_never_reaches_the_job(tmp_path) -> None:
    keys = (f"keys: [{{name: alice, key_sha256: {ALICE_HASH}}}, "
            f"{{name: bob, key_sha256: {BOB_HASH}}}]")
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path, keys)) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/v1/images/generations"
        body = {**BODY, "stream": True}

        def post(key: str, **headers: str) -> httpx.Response:
            return httpx.post(url, json=body, timeout=30, headers={
                "authorization": f"Bearer {key}", "X-Job-Id": job_id, **headers})

        assert post(ALICE).status_code == 200
        assert post(BOB).status_code == 409, "the same body from another key is not a repeat"
        events = f"{stack.gateway.url}/v1/images/jobs/{job_id}/events"
        theirs = httpx.get(events, headers={"authorization": f"Bearer {BOB}"}, timeout=30)
        mine = httpx.get(events, headers={"authorization": f"Bearer {ALICE}"}, timeout=30)
        # Idempotency-Key texts are per key: bob's "order-1" is not alice's.
        named = [httpx.post(url, json=BODY, timeout=30, headers={
            "authorization": f"Bearer {key}", "Idempotency-Key": "order-1"}) for key in (
                ALICE, BOB)]
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "job_not_found"
    assert mine.status_code == 200 and frames(mine.content)[-1][1].endswith(".completed")
    assert [r.status_code for r in named] == [200, 200]
    assert named[0].json()["id"] != named[1].json()["id"]
    assert len(stack.fake.requests) == 3


@pytest.mark.parametrize("value", ["", "x" * 256, "tab\there"], ids=["empty", "long", "ctl"])
def test_a_malformed_idempotency_key_is_a_400(local_gateway, value) -> None:
    answer = httpx.post(f"{local_gateway.url}/v1/images/generations", timeout=30,
                        headers={"Idempotency-Key": value},
                        json={"model": "local", "prompt": "p", "size": "64x64"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "idempotency-key"
