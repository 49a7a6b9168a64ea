"""Admission by capacity: past ``jobs.max_concurrent`` or a model's ``max_concurrent_jobs`` a job
is refused at once with 503 and ``retry-after`` (the SDKs retry it), never parked; the slot comes
back when the job ends."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.clients import async_sdk
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.stack import upstream_and_gateway


def _yaml(gateway_limit: int | None, model_limit: int | None):
    def make(url: str) -> str:
        jobs = f"jobs: {{max_concurrent: {gateway_limit}}}\n" if gateway_limit else ""
        limit = f", max_concurrent_jobs: {model_limit}" if model_limit else ""
        return jobs + f"""models:
  - {{name: slow, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
     api_key: {API_KEY}{limit}}}
  - {{name: local, provider: local}}
"""
    return make


@pytest.mark.parametrize(("gateway_limit", "model_limit", "code", "other_model_runs"), [
    (1, None, "gateway_busy", False),
    (None, 1, "model_busy", True),
])
async def test_a_full_gateway_or_model_answers_503_with_retry_after(
        gateway_limit, model_limit, code, other_model_runs) -> None:
    fake = FakeOpenAI(delay=1.5)
    with upstream_and_gateway(fake, _yaml(gateway_limit, model_limit)) as stack:
        client = async_sdk(stack.gateway)
        first = asyncio.ensure_future(client.images.generate(model="slow", prompt="p"))
        for _ in range(250):
            if fake.requests:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(openai.InternalServerError) as caught:
            await client.images.generate(model="slow", prompt="p")
        error = caught.value
        assert error.status_code == 503 and error.code == code
        assert 1 <= int(error.response.headers["retry-after"]) <= 30
        assert len(fake.requests) == 1, "the refused job never reached the upstream"
        if other_model_runs:
            assert (await client.images.generate(model="local", prompt="p")).data
        else:
            with pytest.raises(openai.InternalServerError):
                await client.images.generate(model="local", prompt="p")
        assert (await first).data
        # The slot came back with the first job.
        assert (await client.images.generate(model="slow", prompt="p")).data
