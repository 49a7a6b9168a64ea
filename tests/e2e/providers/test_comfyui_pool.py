"""One model on a pool of three fake ComfyUI servers, each behind a TCP relay a test can cut (the
server unreachable, its prompts still running) and restore: jobs are spread by the work queued
on each server, a server that goes away is left out and work moves to the others, it comes back
into rotation when it answers again, and full or absent pools are refused at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

import httpx

from tests.support.clients import async_sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI
from tests.support.gateways import start_gateway
from tests.support.paths import COMFYUI_WORKFLOWS
from tests.support.servers import RunningServer, serve
from tests.support.tcp_relay import Relay


def pool_yaml(urls: list[str], limit: int | None = None) -> str:
    servers = "\n".join(f"      - {{url: {url}, max_concurrent: {limit or 'null'}}}"
                        for url in urls)
    return f"""
models:
  - name: {MODEL}
    provider: comfyui
    servers:
{servers}
    health_interval: 0.1
    poll_interval: 0.05
    timeout: {{connect: 2, first_byte: 10, total: 20}}
"""


@asynccontextmanager
async def pool(fakes: list[FakeComfyUI], limit: int | None = None) -> AsyncIterator[
        tuple[list[Relay], RunningServer]]:
    """The fakes served, each behind a relay, and a gateway whose model pools them."""
    with ExitStack() as running:
        relays = [Relay("127.0.0.1", running.enter_context(serve(fake.app)).port)
                  for fake in fakes]
        for relay in relays:
            await relay.restore()
        try:
            urls = [f"http://127.0.0.1:{relay.port}" for relay in relays]
            with start_gateway(pool_yaml(urls, limit)) as gateway:
                yield relays, gateway
        finally:
            for relay in relays:
                await relay.cut()


async def until(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):  # bounded
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def ours(fake: FakeComfyUI) -> int:
    """The gateway's prompts on a server (others' come from client 'someone-else')."""
    return sum(p.client_id != "someone-else" for p in fake.prompts.values())


def submit(gateway: RunningServer, job: str, quality: str = "low") -> asyncio.Future:
    return asyncio.ensure_future(async_sdk(gateway).images.generate(
        model=MODEL, prompt="p", size="256x256", quality=quality,
        extra_headers={"X-Job-Id": job}))


async def queued_with_place(http: httpx.AsyncClient, job: str) -> None:
    """Until the gateway reports the job's place in its server's queue."""
    for _ in range(1000):
        snapshot = (await http.get(f"/v1/images/jobs/{job}")).json()
        if snapshot.get("queue_position") is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{job} never showed its place in a queue")


async def foreign_prompts(fake: FakeComfyUI, relay: Relay, count: int) -> None:
    graph = json.loads((COMFYUI_WORKFLOWS / "sdxl_text_to_image.json").read_text())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}") as http:
        for _ in range(count):
            answer = await http.post("/prompt", json={"prompt": graph,
                                                      "client_id": "someone-else"})
            assert answer.status_code == 200


async def test_jobs_go_where_the_least_work_is_queued() -> None:
    fakes = [FakeComfyUI(step_delay=0.005) for _ in range(3)]
    async with pool(fakes) as (relays, gateway):
        await submit(gateway, str(uuid.uuid4()))  # the first job starts the health checks
        for fake in fakes:
            fake.paused = True
        await foreign_prompts(fakes[0], relays[0], 3)  # another client's work, waiting
        checks = fakes[0].health_checks
        await until(lambda: fakes[0].health_checks >= checks + 2)  # the gateway has looked
        jobs, tasks = [str(uuid.uuid4()) for _ in range(6)], []
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            for job in jobs:  # one at a time, each waiting in its server's queue
                tasks.append(submit(gateway, job))
                await queued_with_place(http, job)
        # The first job went to server 0 (all idle, its turn); then 3 foreign prompts wait
        # there, so the six go to the other two, evenly.
        assert [ours(fake) for fake in fakes] == [1, 3, 3]
        for fake in fakes:
            fake.paused = False
        results = await asyncio.gather(*tasks)
    assert all(len(result.data) == 1 for result in results)


async def test_a_server_that_goes_away_is_left_out_until_it_answers_again() -> None:
    fakes = [FakeComfyUI(step_delay=0.04) for _ in range(3)]
    async with pool(fakes) as (relays, gateway):
        first = submit(gateway, str(uuid.uuid4()), quality="high")  # 40 steps, 1.6 s
        await until(lambda: any(p.status == "running" for f in fakes for p in f.prompts.values()))
        down = next(i for i, fake in enumerate(fakes) if fake.prompts)
        await relays[down].cut()  # mid-run: unreachable, its prompt still running
        more = []
        for count in range(2, 6):
            more.append(submit(gateway, str(uuid.uuid4())))
            await until(lambda n=count: sum(map(ours, fakes)) == n)
        assert ours(fakes[down]) == 1, "no new job went to the server that is away"
        await relays[down].restore()
        checks = fakes[down].health_checks
        await until(lambda: fakes[down].health_checks >= checks + 1)
        result = await first  # followed through /history across the outage
        await asyncio.gather(*more)
        back = [submit(gateway, str(uuid.uuid4())) for _ in range(3)]
        await asyncio.gather(*back)
        assert ours(fakes[down]) == 2, "back in rotation: one of the three idle servers' jobs"
    assert len(result.data) == 1
    assert fakes[down].history_reads >= 1


async def test_a_full_pool_is_a_503_with_retry_after() -> None:
    fakes = [FakeComfyUI(step_delay=0.005, paused=True) for _ in range(2)]
    async with pool(fakes, limit=1) as (_, gateway):
        jobs = [str(uuid.uuid4()) for _ in range(2)]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            tasks = []
            for job in jobs:
                tasks.append(submit(gateway, job))
                await queued_with_place(http, job)
            refused = await http.post("/v1/images/generations",
                                      json={"model": MODEL, "prompt": "p", "size": "256x256"})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "upstream_busy")
        assert "holds as many jobs as it may" in error["message"]
        for fake in fakes:
            fake.paused = False
        await asyncio.gather(*tasks)
    assert [ours(fake) for fake in fakes] == [1, 1]


async def test_no_server_answering_is_a_503_naming_each() -> None:
    fakes = [FakeComfyUI(step_delay=0.005) for _ in range(2)]
    async with pool(fakes) as (relays, gateway):
        for relay in relays:
            await relay.cut()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            refused = await http.post("/v1/images/generations",
                                      json={"model": MODEL, "prompt": "p", "size": "256x256"})
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_unavailable")
    for relay in relays:
        assert f"127.0.0.1:{relay.port}: " in error["message"]
