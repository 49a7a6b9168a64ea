"""What operators see: /metrics moves by exactly what happened, JSON logs carry the request id
and no secrets, /healthz and /readyz tell the truth."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import async_sdk, sdk
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.progress_client import Watcher
from tests.support.servers import free_port
from tests.support.stack import upstream_and_gateway


def scrape(server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{server.url}/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def local_and_flaky(url: str) -> str:
    """``local``, and ``flaky`` behind the fake OpenAI upstream, retried once."""
    return f"""
reliability: {{retries: 1, backoff_base: 0.01, backoff_max: 0.02}}
models:
  - {{name: local, provider: local}}
  - {{name: flaky, provider: openai, upstream_model: gpt-image-1,
      base_url: "{url}/v1", api_key: {API_KEY}}}
"""


async def test_metrics_move_by_the_expected_amounts() -> None:
    with upstream_and_gateway(FakeOpenAI(), local_and_flaky) as (fake, server):
        before = scrape(server)
        client = sdk(server)
        client.images.generate(model="local", prompt="p", size="64x64", n=2)
        client.images.generate(model="local", prompt="p", size="64x64")
        events = list(client.images.generate(model="local", prompt="p", size="64x64",
                                             stream=True, partial_images=2))
        with pytest.raises(openai.BadRequestError):  # refused before it runs: not a job
            client.images.generate(model="local", prompt="p", size="1x1")
        fake.mode, fake.status, fake.status_times = "status", 503, 1
        fake.status_body = b'{"error":{"message":"overloaded","type":"server_error"}}'
        client.images.generate(model="flaky", prompt="p")  # one retry, then success
        watcher = Watcher()
        await watcher.connect(server.url)
        during = scrape(server)
        await watcher.close()
        await asyncio.sleep(0.2)
        after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"kind": "generation", "status": "succeeded", "provider": "local", "model": "local",
          "error_code": ""}
    assert moved("image_proxy_jobs_total", **ok) == 3
    assert moved("image_proxy_jobs_total", **{**ok, "status": "failed"}) == 0
    assert moved("image_proxy_jobs_total", kind="generation", status="succeeded",
                 provider="openai", model="flaky", error_code="") == 1
    route = "/v1/images/generations"
    assert moved("image_proxy_requests_total", route=route, status_code="200",
                 error_code="") == 4
    assert moved("image_proxy_requests_total", route=route, status_code="400",
                 error_code="invalid_value") == 1
    assert moved("image_proxy_upstream_attempts_total", model="flaky", provider="openai",
                 outcome="ok") == 1
    assert moved("image_proxy_job_seconds_count", model="local", provider="local") == 3
    assert moved("image_proxy_retries_total", model="flaky") == 1
    assert moved("image_proxy_upstream_seconds_count", provider="openai",
                 outcome="upstream_error") == 1
    assert moved("image_proxy_upstream_seconds_count", provider="openai", outcome="ok") == 1
    partial = sum(len(e.b64_json) for e in events[:-1])
    assert moved("image_proxy_image_bytes_total", kind="partial") == partial
    assert moved("image_proxy_image_bytes_total", kind="final") > 0
    assert value(after, "image_proxy_jobs_in_flight") == 0
    assert value(after, "image_proxy_sse_streams_open") == 0
    assert value(during, "image_proxy_socket_clients") == 1
    assert value(after, "image_proxy_socket_clients") == 0


async def test_gauges_while_a_stream_is_open(local_gateway) -> None:
    stream = await async_sdk(local_gateway).images.generate(
        model="local/slow", prompt="p", size="64x64", quality="high", stream=True,
        partial_images=3)
    async for _ in stream:
        during = scrape(local_gateway)
        break
    await stream.close()
    assert value(during, "image_proxy_sse_streams_open") == 1
    assert value(during, "image_proxy_jobs_in_flight") == 1


def test_health_and_readiness(start_gateway) -> None:
    with start_gateway("models: [{name: local, provider: local}]") as server:
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    with start_gateway("redis_url: redis://127.0.0.1:1/0\n"
                       "models: [{name: local, provider: local}]") as server:
        response = httpx.get(f"{server.url}/readyz")
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert response.status_code == 503 and "redis" in response.json()["reason"]


async def test_json_logs_carry_the_request_id_and_no_query_strings(tmp_path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--port", str(port), "--access-log",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    job_id = str(uuid.uuid4())
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(300):
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            await client.post("/v1/images/generations", headers={"X-Job-Id": job_id},
                              json={"model": "local", "prompt": "a secret prompt",
                                    "size": "64x64"})
            await client.get("/v1/images/files/x.png?expires=1&signature=deadbeef")
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "proxy.access"]
    post = next(line for line in access if line.get("method") == "POST")
    assert post["request_id"] == job_id and post["status"] == 200
    assert post["path"] == "/v1/images/generations" and post["duration_ms"] >= 0
    text = stderr.decode()
    assert "a secret prompt" not in text and "deadbeef" not in text
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
