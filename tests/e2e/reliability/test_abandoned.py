"""A client that leaves takes its job with it: nothing reaches the upstream on its behalf after it
hung up, whether it left while the gateway fetched its input images, waited to retry, or waited
for the first event; and what was already running upstream is closed.

The fake upstream counts every request it receives; each test makes the gateway wait at a known
point, disconnects the client there, and checks the count once the wait would have ended.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.fetch_targets import FetchTarget
from tests.support.servers import RunningServer, serve
from tests.support.stack import upstream_and_gateway

RETRY_AFTER = 1  # seconds the upstream asks the gateway to wait before trying again


def gateway_yaml(fetch_port: int) -> object:
    def make(url: str) -> str:
        return f"""
reliability: {{retries: 2, retry_after_max: 30, circuit_failures: 1000}}
fetch:
  allow_hosts: ["127.0.0.1:{fetch_port}"]
models:
  - {{name: m, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
     api_key: {API_KEY}}}
"""
    return make


@pytest.fixture
def images() -> Iterator[tuple[FetchTarget, RunningServer]]:
    target = FetchTarget()
    with serve(target.build()) as server:
        yield target, server


async def _until(condition, what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _leave_when(url: str, body: dict, job_id: str, condition, what: str) -> None:
    """POST ``body``, then hang up as soon as ``condition()`` holds."""
    async with httpx.AsyncClient(timeout=30) as client:
        request = asyncio.ensure_future(client.post(url, json=body,
                                                    headers={"X-Job-Id": job_id}))
        await _until(condition, what)
        request.cancel()  # closes the connection: the client is gone
        with pytest.raises(asyncio.CancelledError):
            await request


def _status(server: RunningServer, job_id: str) -> str | None:
    answer = httpx.get(f"{server.url}/v1/images/jobs/{job_id}")
    return answer.json()["status"] if answer.status_code == 200 else None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_no_retry_reaches_the_upstream_after_the_client_left(images, stream) -> None:
    """The upstream says 429, retry after 1 s; the client leaves during that wait."""
    fake = FakeOpenAI(mode="status", status=429, status_times=1,
                      status_headers={"retry-after": str(RETRY_AFTER)})
    _, image_server = images
    with upstream_and_gateway(fake, gateway_yaml(image_server.port)) as stack:
        job_id = str(uuid.uuid4())
        body = {"model": "m", "prompt": "p", "stream": stream}
        await _leave_when(f"{stack.gateway.url}/v1/images/generations", body, job_id,
                          lambda: len(fake.requests) == 1, "the first (refused) attempt")
        await _until(lambda: _status(stack.gateway, job_id) == "cancelled", "the job to end")
        await asyncio.sleep(RETRY_AFTER + 0.5)  # when the retry would have gone out
        assert len(fake.requests) == 1, "the retry of an abandoned job reached the upstream"


async def test_no_edit_reaches_the_upstream_when_the_client_left_during_the_image_fetch(
        images) -> None:
    """The edit's image URL answers slowly (until its client leaves, or 2 s); the client
    leaves while the gateway is fetching it."""
    target, image_server = images
    fake = FakeOpenAI()
    with upstream_and_gateway(fake, gateway_yaml(image_server.port)) as stack:
        body = {"model": "m", "prompt": "p", "image": f"{image_server.url}/slow"}
        await _leave_when(f"{stack.gateway.url}/v1/images/edits", body, str(uuid.uuid4()),
                          lambda: "/slow" in target.paths,
                          "the gateway to start fetching the image")
        await asyncio.sleep(2.5)  # the slow image would have arrived by now
        assert fake.requests == [], "an abandoned edit reached the upstream"


async def test_a_stream_abandoned_before_its_first_event_ends_at_once(images) -> None:
    """The upstream takes 6 s to start its stream; the client leaves before that: the job
    ends (and its upstream request is closed) then, not when the upstream gets round to it."""
    fake = FakeOpenAI(delay=6)
    _, image_server = images
    with upstream_and_gateway(fake, gateway_yaml(image_server.port)) as stack:
        job_id = str(uuid.uuid4())
        body = {"model": "m", "prompt": "p", "stream": True, "partial_images": 1}
        await _leave_when(f"{stack.gateway.url}/v1/images/generations", body, job_id,
                          lambda: len(fake.requests) == 1, "the upstream call")
        await _until(lambda: _status(stack.gateway, job_id) == "cancelled",
                     "the job to end before the upstream answers", seconds=3)
        assert not fake.completed_sent
