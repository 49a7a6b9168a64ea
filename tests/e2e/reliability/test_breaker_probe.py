"""The circuit breaker's half-open probe always resolves, through a real gateway.

A fake OpenAI upstream counts every request it receives. Each test opens the circuit with two
503s, waits out a short cooldown, ends the probe in a way that is neither a success nor a failure
that counts (the upstream answers 400; the probe's client hangs up while the upstream holds the
request), and then shows that the next request reaches the upstream instead of being refused
503 ``upstream_circuit_open`` with nothing sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx

from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.stack import upstream_and_gateway

COOLDOWN = 0.5
UPSTREAM_503 = b'{"error":{"message":"The engine is overloaded.","type":"server_error"}}'
UPSTREAM_400 = (b'{"error":{"message":"Invalid value for size.","type":"invalid_request_error",'
                b'"param":"size","code":"invalid_value"}}')


def config(url: str) -> str:
    return (f"reliability: {{retries: 0, circuit_failures: 2, circuit_cooldown: {COOLDOWN}}}\n"
            f"models:\n  - {{name: m, provider: openai, upstream_model: gpt-image-1, "
            f"base_url: '{url}/v1', api_key: {API_KEY}}}\n")


async def generate(client: httpx.AsyncClient, job_id: str | None = None) -> httpx.Response:
    headers = {"X-Job-Id": job_id} if job_id else {}
    return await client.post("/v1/images/generations", json={"model": "m", "prompt": "p"},
                             headers=headers)


async def open_the_circuit(client: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    """Two 503s in a row open it; a third request is refused without reaching the upstream;
    then the cooldown passes."""
    fake.mode, fake.status, fake.status_body, fake.status_times = "status", 503, UPSTREAM_503, 2
    for _ in range(2):
        assert (await generate(client)).status_code == 502
    refused = await generate(client)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "upstream_circuit_open"
    assert len(fake.requests) == 2
    await asyncio.sleep(COOLDOWN + 0.1)


async def reaches_the_upstream(client: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    before = len(fake.requests)
    answer = await generate(client)
    assert len(fake.requests) == before + 1, f"nothing reached the upstream: {answer.text}"
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["b64_json"]


async def until(condition, what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_probe_answered_400_closes_the_circuit() -> None:
    fake = FakeOpenAI()
    with upstream_and_gateway(fake, config) as (_, server):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await open_the_circuit(client, fake)
            fake.status, fake.status_body, fake.status_times = 400, UPSTREAM_400, 1
            probe = await generate(client)
            assert probe.status_code == 400, probe.text
            assert probe.json()["error"]["code"] == "invalid_value"
            assert len(fake.requests) == 3, "the probe reached the upstream"
            await reaches_the_upstream(client, fake)
            await reaches_the_upstream(client, fake)  # closed: not one probe, every request


async def test_a_probe_whose_client_left_frees_the_probe() -> None:
    fake = FakeOpenAI()
    with upstream_and_gateway(fake, config) as (_, server):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await open_the_circuit(client, fake)
            fake.mode, fake.delay = "ok", 4.0  # the upstream holds the probe
            job_id = str(uuid.uuid4())
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as leaving:
                probe = asyncio.ensure_future(generate(leaving, job_id))

                async def probe_reached_the_upstream() -> bool:
                    return len(fake.requests) == 3

                await until(probe_reached_the_upstream, "the probe to reach the upstream")
                probe.cancel()  # the probe's client hangs up: its connection is closed
                with contextlib.suppress(asyncio.CancelledError):
                    await probe

            async def probe_cancelled() -> bool:
                job = await client.get(f"/v1/images/jobs/{job_id}")
                return job.json()["status"] == "cancelled"

            await until(probe_cancelled, "the gateway to end the abandoned probe")
            fake.delay = 0.0
            await reaches_the_upstream(client, fake)
