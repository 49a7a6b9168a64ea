"""What ``/metrics`` counts: every request by route, status code and error code (each kind of
refusal included, on the image endpoints' short way in and on Starlette's routes alike, and
never the probes or the scrape itself); each upstream's circuit as it opens, probes and closes;
what jobs cost; the build; Redis up and down; jobs waiting in their upstream's queue."""

from __future__ import annotations

import asyncio
import platform
import uuid

import httpx

from proxy import __version__
from tests.support.fakes.comfyui import COMFY_MODEL, FakeComfyUI, comfy_yaml
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.keys import ADMIN, ADMIN_HASH, ALICE, ALICE_HASH, VIEWER, VIEWER_HASH
from tests.support.redis_server import redis_server
from tests.support.stack import upstream_and_gateway

from .test_observability import scrape, value

GENERATIONS = "/v1/images/generations"
JOB = {"model": "local", "prompt": "p", "size": "64x64", "quality": "low"}


def refusals_config(url: str) -> str:
    return f"""
server: {{max_body_bytes: 4096}}
keys:
  - {{name: admin, key_sha256: {ADMIN_HASH}, capabilities: [admin]}}
  - {{name: alice, key_sha256: {ALICE_HASH}, requests_per_minute: 1}}
  - {{name: viewer, key_sha256: {VIEWER_HASH}, capabilities: [images], models: ["local*"]}}
models:
  - {{name: local, provider: local}}
  - {{name: local/slow, provider: local, step_delay: 0.3, max_concurrent_jobs: 1}}
  - {{name: openai/gpt-image-1, provider: openai, base_url: "{url}/v1", api_key: {API_KEY}}}
"""


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_every_kind_of_refusal_is_counted_with_its_route_and_code() -> None:
    with upstream_and_gateway(FakeOpenAI(), refusals_config) as (_, server):
        before = scrape(server)
        answers: list[tuple[str, int, str]] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            async def call(route: str, method: str, path: str, key: str | None = None,
                           **kwargs) -> httpx.Response:
                headers = {**(auth(key) if key else {}), **kwargs.pop("headers", {})}
                response = await client.request(method, path, headers=headers, **kwargs)
                code = response.json()["error"]["code"] if response.status_code >= 400 else ""
                answers.append((route, response.status_code, code))
                return response

            # The image endpoints (their short way in).
            await call(GENERATIONS, "POST", GENERATIONS, json=JOB)
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, json={**JOB, "size": "1x1"})
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, content=b"{not json",
                       headers={"content-type": "application/json"})
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, content=b'{"prompt": "p"}',
                       headers={"content-type": "text/plain"})
            await call(GENERATIONS, "POST", GENERATIONS, VIEWER,
                       json={"model": "openai/gpt-image-1", "prompt": "p"})
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, json={**JOB, "model": "nope"})
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, json={**JOB, "prompt": "x" * 5000})
            await call(GENERATIONS, "POST", GENERATIONS, ALICE, json=JOB)
            await call(GENERATIONS, "POST", GENERATIONS, ALICE, json=JOB)
            slow = {**JOB, "model": "local/slow", "quality": "high"}
            running = asyncio.create_task(call(GENERATIONS, "POST", GENERATIONS, ADMIN, json=slow))
            for _ in range(200):
                if value(scrape(server), "image_proxy_jobs_in_flight") == 1:
                    break
                await asyncio.sleep(0.02)
            await call(GENERATIONS, "POST", GENERATIONS, ADMIN, json=slow)
            await running
            # Starlette's routes.
            await call("unmatched", "GET", "/v1/no/such/path", ADMIN)
            await call(GENERATIONS, "GET", GENERATIONS, ADMIN)
            await call("/v1/models", "DELETE", "/v1/models", ADMIN)
            await call("/v1/usage", "GET", "/v1/usage")
            await call("/v1/models/{model:path}", "GET", "/v1/models/nope", ADMIN)
            await call("/v1/images/jobs/{job_id}", "GET", f"/v1/images/jobs/{uuid.uuid4()}",
                       ADMIN)
            # Neither the probes nor the scrape count.
            await client.get("/healthz")
            await client.get("/readyz")
        after = scrape(server)

    assert {(status, code) for _, status, code in answers} >= {
        (200, ""), (400, "invalid_value"), (400, "invalid_json"), (401, "invalid_api_key"),
        (403, "model_not_allowed"), (404, "model_not_found"), (413, "request_too_large"),
        (429, "rate_limit_exceeded"), (503, "model_busy"), (404, "not_found"),
        (405, "method_not_allowed"), (404, "job_not_found"),
        (415, "unsupported_media_type")}
    expected: dict[tuple[str, int, str], int] = {}
    for answer in answers:
        expected[answer] = expected.get(answer, 0) + 1
    for (route, status, code), count in expected.items():
        labels = {"route": route, "status_code": str(status), "error_code": code}
        moved = (value(after, "image_proxy_requests_total", **labels)
                 - value(before, "image_proxy_requests_total", **labels))
        assert moved == count, (labels, moved, count)
    counted = sum(v - before.get(k, 0) for k, v in after.items()
                  if k[0] == "image_proxy_requests_total")
    assert counted == len(answers)
    assert not any(dict(labels).get("route") in ("/healthz", "/readyz", "/metrics")
                   for name, labels in after if name == "image_proxy_requests_total")


def circuit_config(url: str) -> str:
    return f"""
reliability: {{retries: 0, circuit_failures: 2, circuit_cooldown: {COOLDOWN}}}
models:
  - {{name: openai/gpt-image-1, provider: openai, base_url: "{url}/v1", api_key: {API_KEY}}}
"""


COOLDOWN = 2.0


async def test_circuit_state_cost_and_build_info() -> None:
    fake = FakeOpenAI()
    with upstream_and_gateway(fake, circuit_config) as (_, server):
        states = {labels: v for (name, labels), v in scrape(server).items()
                  if name == "image_proxy_upstream_circuit_state"}
        assert list(states.values()) == [0]  # every upstream shown from the start, closed
        ((_, upstream),), = states
        body = {"model": "openai/gpt-image-1", "prompt": "p", "size": "1024x1024",
                "quality": "low"}
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            costs = []
            for _ in range(2):
                answer = await client.post(GENERATIONS, json=body)
                assert answer.status_code == 200
                costs.append(answer.json()["cost"])
            fake.mode, fake.status = "status", 503
            fake.status_body = b'{"error":{"message":"overloaded","type":"server_error"}}'
            for _ in range(2):
                assert (await client.post(GENERATIONS, json=body)).status_code == 502
            opened = scrape(server)
            fake.mode, fake.delay = "ok", 0.5

            async def until_probed() -> tuple[int, httpx.Response]:
                """Requests fail fast until the cooldown is over; then one is the probe."""
                for fast in range(int(COOLDOWN * 100)):
                    answer = await client.post(GENERATIONS, json=body)
                    if answer.status_code != 503:
                        return fast, answer
                    assert answer.json()["error"]["code"] == "upstream_circuit_open"
                    await asyncio.sleep(0.02)
                raise AssertionError("the circuit never let a probe through")

            probe = asyncio.create_task(until_probed())
            probing = opened
            for _ in range(int(COOLDOWN * 100)):
                probing = scrape(server)
                if value(probing, "image_proxy_upstream_circuit_state", upstream=upstream) == 1:
                    break
                await asyncio.sleep(0.02)
            fast, answer = await probe
            assert answer.status_code == 200 and fast > 0
            costs.append(answer.json()["cost"])
        closed = scrape(server)

    assert value(opened, "image_proxy_upstream_circuit_state", upstream=upstream) == 2
    assert value(opened, "image_proxy_upstream_circuit_opened_total", upstream=upstream) == 1
    assert value(probing, "image_proxy_upstream_circuit_state", upstream=upstream) == 1
    assert value(closed, "image_proxy_upstream_circuit_state", upstream=upstream) == 0
    assert value(closed, "image_proxy_upstream_circuit_opened_total", upstream=upstream) == 1
    model = {"model": "openai/gpt-image-1", "provider": "openai"}
    attempts = "image_proxy_upstream_attempts_total"
    assert value(closed, attempts, **model, outcome="ok") == 3
    assert value(closed, attempts, **model, outcome="upstream_error") == 2
    assert value(closed, attempts, **model, outcome="upstream_circuit_open") == fast
    failed = {**model, "kind": "generation", "status": "failed"}
    assert value(closed, "image_proxy_jobs_total", **failed, error_code="upstream_error") == 2
    assert value(closed, "image_proxy_jobs_total", **failed,
                 error_code="upstream_circuit_open") == fast
    assert value(closed, "image_proxy_requests_total", route=GENERATIONS, status_code="503",
                 error_code="upstream_circuit_open") == fast
    assert all(cost > 0 for cost in costs)
    assert abs(value(closed, "image_proxy_cost_usd_total", **model) - sum(costs)) < 1e-9
    assert value(closed, "image_proxy_build_info", version=__version__,
                 python=platform.python_version()) == 1
    assert value(closed, "image_proxy_worker_processes") == 1
    assert value(closed, "image_proxy_jobs_capacity") > 0


async def test_shared_store_up_follows_redis_and_exists_only_with_it(start_gateway) -> None:
    with start_gateway("models: [{name: local, provider: local}]") as server:
        assert not any(name == "image_proxy_shared_store_up" for name, _ in scrape(server))
    with redis_server() as redis, start_gateway(
            f"redis_url: {redis.url}\nredis_prefix: metrics-{uuid.uuid4().hex[:8]}\n"
            "models: [{name: local, provider: local}]") as server:
        seen = [value(scrape(server), "image_proxy_shared_store_up")]
        redis.kill()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for want in (0, 1):
                for _ in range(200):  # /readyz asks Redis (during an outage, its probe does)
                    await client.get("/readyz")
                    if value(scrape(server), "image_proxy_shared_store_up") == want:
                        break
                    await asyncio.sleep(0.05)
                seen.append(value(scrape(server), "image_proxy_shared_store_up"))
                if want == 0:
                    redis.start()
    assert seen == [1, 0, 1]


async def test_a_job_in_its_upstreams_queue_is_counted_as_queued_until_it_runs() -> None:
    fake = FakeComfyUI(step_delay=0.005, paused=True)  # prompts wait in ComfyUI's queue
    with upstream_and_gateway(fake, comfy_yaml) as (_, server):
        queued = {"model": COMFY_MODEL}
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            job = asyncio.create_task(client.post(GENERATIONS, json={
                "model": COMFY_MODEL, "prompt": "p", "size": "256x256"}))
            waiting = 0.0
            for _ in range(300):
                waiting = value(scrape(server), "image_proxy_jobs_queued", **queued)
                if waiting:
                    break
                await asyncio.sleep(0.02)
            fake.paused = False
            assert (await job).status_code == 200
        after = scrape(server)
    assert waiting == 1
    assert value(after, "image_proxy_jobs_queued", **queued) == 0
    assert value(after, "image_proxy_jobs_in_flight") == 0
