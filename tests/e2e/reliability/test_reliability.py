"""Fault injection: what the gateway does when upstreams fail, and the job status each ends in.

Every case here uses fake upstreams on loopback that fail on purpose, real gateways, and the
official SDK; each checks the documented outcome and the job's final snapshot.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.support.clients import async_sdk, sdk
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.schemas import validate
from tests.support.stack import upstream_and_gateway

BREAKER_503 = b'{"error":{"message":"The engine is overloaded.","type":"server_error"}}'


def model(name: str, url: str, extra: str = "") -> str:
    return (f"  - {{name: {name}, provider: openai, upstream_model: gpt-image-1, "
            f"base_url: '{url}/v1', api_key: {API_KEY}, "
            f"timeout: {{connect: 2, first_byte: 2, total: 10}}{extra}}}\n")


def reliability(retries: int = 1, failures: int = 1000) -> str:
    return (f"reliability: {{retries: {retries}, backoff_base: 0.05, backoff_max: 0.2, "
            f"circuit_failures: {failures}, circuit_cooldown: 60}}\n")


def one_model(settings: str = "") -> Callable[[str], str]:
    """Gateway YAML for the fake upstream's URL: ``settings`` (a ``reliability:`` line, or none:
    the tests' default, no retries), then model ``m`` behind the fake."""
    return lambda url: settings + "models:\n" + model("m", url)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


def snapshot(server, job_id: str) -> dict:
    return httpx.get(f"{server.url}/v1/images/jobs/{job_id}").json()


def generate(server, job_id: str, **kwargs):
    return sdk(server).images.generate(prompt="p", extra_headers={"X-Job-Id": job_id}, **kwargs)


def fails(server, exc_type, **kwargs) -> tuple[openai.APIStatusError, dict]:
    job_id = str(uuid.uuid4())
    with pytest.raises(exc_type) as caught:
        generate(server, job_id, **kwargs)
    validate("ErrorResponse", caught.value.response.json())
    return caught.value, snapshot(server, job_id)


def test_refused_connection_is_retried_then_a_502(start_gateway) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with start_gateway(reliability(retries=2) + "models:\n" + model("m", url)) as server:
        started = time.monotonic()
        error, job = fails(server, openai.InternalServerError, model="m")
    assert error.status_code == 502 and error.code == "upstream_unreachable"
    assert time.monotonic() - started < 5, "backoff is short and bounded"
    assert job["status"] == "failed" and job["error"]["code"] == "upstream_unreachable"


def test_stall_before_headers_is_a_504_not_retried() -> None:
    with upstream_and_gateway(FakeOpenAI(mode="hang"),
                              one_model(reliability(retries=2))) as (fake, server):
        error, job = fails(server, openai.InternalServerError, model="m")
    assert error.status_code == 504 and error.code == "upstream_timeout"
    assert error.response.headers["x-should-retry"] == "false"
    assert len(fake.requests) == 1, "a slow upstream may be drawing (and billing): no retry"
    assert job["status"] == "failed"


@pytest.mark.parametrize(("mode", "code"), [("stall_mid_stream", "upstream_timeout"),
                                            ("drop_mid_stream", "upstream_disconnected")])
def test_failure_mid_stream_is_an_error_event_and_a_failed_job(mode, code) -> None:
    with upstream_and_gateway(FakeOpenAI(mode=mode),
                              one_model(reliability(retries=2))) as (fake, server):
        job_id = str(uuid.uuid4())
        seen = []
        with pytest.raises(openai.APIError) as caught:
            for event in generate(server, job_id, model="m", stream=True, partial_images=1):
                seen.append(event.type)
        job = snapshot(server, job_id)
    assert seen == ["image_generation.partial_image"]
    assert caught.value.body["code"] == code
    assert len(fake.requests) == 1, "a partial image was sent: never retried"
    assert job["status"] == "failed" and job["error"]["code"] == code


@pytest.mark.parametrize("mode", ["garbage", "truncated"])
def test_malformed_answers_are_a_502(mode) -> None:
    with upstream_and_gateway(FakeOpenAI(mode=mode),
                              one_model(reliability(retries=0))) as (_, server):
        error, job = fails(server, openai.InternalServerError, model="m")
    assert error.code == "upstream_invalid_response"
    assert job["status"] == "failed"


def test_429_with_retry_after_is_waited_out_and_retried() -> None:
    fake = FakeOpenAI(mode="status", status=429, status_times=1)
    fake.status_headers = {"retry-after": "1"}
    fake.status_body = (b'{"error":{"message":"Slow down","type":"requests",'
                        b'"code":"rate_limit_exceeded"}}')
    with upstream_and_gateway(fake, one_model(reliability(retries=2))) as (_, server):
        job_id = str(uuid.uuid4())
        started = time.monotonic()
        result = generate(server, job_id, model="m")
        waited = time.monotonic() - started
        job = snapshot(server, job_id)
    assert result.data and waited >= 1.0, "retry-after was honoured"
    assert len(fake.requests) == 2
    assert job["status"] == "succeeded"


def test_503_storm_opens_the_circuit() -> None:
    fake = FakeOpenAI(mode="status", status=503, status_body=BREAKER_503)
    with upstream_and_gateway(fake, one_model(reliability(retries=0, failures=3))) \
            as (_, server):
        codes = []
        for _ in range(6):
            error, job = fails(server, openai.APIStatusError, model="m")
            codes.append((error.status_code, error.code))
            assert job["status"] == "failed"
    assert codes[:3] == [(502, "upstream_error")] * 3
    assert codes[3:] == [(503, "upstream_circuit_open")] * 3
    assert len(fake.requests) == 3, "an open circuit sends nothing upstream"


def test_fallback_serves_when_the_primary_fails() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"

    def config(url: str) -> str:
        return (reliability(retries=1) + "models:\n"
                + model("primary", dead, ", fallbacks: [backup]") + model("backup", url))

    with upstream_and_gateway(FakeOpenAI(), config) as (fake, server):
        job_id = str(uuid.uuid4())
        raw = sdk(server).images.with_raw_response.generate(
            model="primary", prompt="p", extra_headers={"X-Job-Id": job_id})
        body = raw.http_response.json()
        job = snapshot(server, job_id)
    assert body["model"] == "backup" and body["provider"] == "openai"
    assert len(fake.requests) == 1
    assert job["status"] == "succeeded"


def test_a_fallback_that_cannot_take_the_request_is_skipped() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"

    def config(url: str) -> str:
        return (reliability(retries=0) + "models:\n"
                + model("primary", dead, ", fallbacks: [tiny, backup]")
                + model("tiny", url, ", rules: {n_max: 1}") + model("backup", url))

    with upstream_and_gateway(FakeOpenAI(), config) as (_, server):
        body = sdk(server).images.with_raw_response.generate(
            model="primary", prompt="p", n=2).http_response.json()
    assert body["model"] == "backup" and len(body["data"]) == 2


async def test_disconnecting_a_stream_closes_the_upstream_request() -> None:
    with upstream_and_gateway(FakeOpenAI(event_gap=1.0), one_model()) as (fake, server):
        job_id = str(uuid.uuid4())
        stream = await async_sdk(server).images.generate(
            model="m", prompt="p", stream=True, partial_images=3,
            extra_headers={"X-Job-Id": job_id})
        async for event in stream:
            assert event.type == "image_generation.partial_image"
            break
        await stream.close()  # the client goes away mid-stream
        status = None
        for _ in range(100):
            status = snapshot(server, job_id)["status"]
            if fake.stream_abandoned and status == "cancelled":
                break
            await asyncio.sleep(0.05)
    assert fake.stream_abandoned, "the upstream stream was closed"
    assert not fake.completed_sent
    assert status == "cancelled"


async def test_async_job_returns_202_and_the_result_later() -> None:
    with upstream_and_gateway(FakeOpenAI(delay=1.0), one_model()) as (_, server):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            started = time.monotonic()
            accepted = await client.post("/v1/images/generations",
                                         json={"model": "m", "prompt": "p", "n": 2},
                                         headers={"Prefer": "respond-async"})
            assert time.monotonic() - started < 0.9, "answered before the image exists"
            assert accepted.status_code == 202
            assert accepted.headers["preference-applied"] == "respond-async"
            job_id = accepted.json()["id"]
            assert accepted.headers["location"] == f"/v1/images/jobs/{job_id}"
            assert accepted.json()["status"] in ("queued", "running")
            for _ in range(100):
                job = (await client.get(accepted.headers["location"])).json()
                if job["status"] == "succeeded":
                    break
                await asyncio.sleep(0.1)
    assert job["percent"] == 100
    validate("ImagesResponse", job["result"])
    assert len(job["result"]["data"]) == 2 and job["result"]["id"] == job_id


def test_async_and_stream_cannot_be_combined() -> None:
    with upstream_and_gateway(FakeOpenAI(), one_model()) as (_, server):
        response = httpx.post(f"{server.url}/v1/images/generations",
                              json={"model": "m", "prompt": "p", "stream": True},
                              headers={"Prefer": "respond-async"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream"


def test_a_success_resets_the_failure_count() -> None:
    """Sporadic failures between successes never add up to an open circuit."""
    fake = FakeOpenAI(status=503, status_body=BREAKER_503)
    with upstream_and_gateway(fake, one_model(reliability(retries=0, failures=2))) \
            as (_, server):
        for _ in range(3):
            fake.mode, fake.status_times = "status", 1
            fails(server, openai.InternalServerError, model="m")  # one failure...
            assert generate(server, str(uuid.uuid4()), model="m").data  # ...then a success
    assert len(fake.requests) == 6, "the circuit never opened"
