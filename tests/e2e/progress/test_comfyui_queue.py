"""Three jobs queued on one ComfyUI server, watched over Socket.IO: each is ``queued`` with its
place in ComfyUI's queue (3, 2, 1 for the last one), at 0 % and never estimated while it waits;
once it runs, its own sampler steps take it to 100. On a current build and an older one."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support.clients import async_sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.progress_client import Watcher, assert_well_formed
from tests.support.stack import upstream_and_gateway

STEPS = 12  # quality "low" in the built-in workflow's map


async def until(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):  # bounded
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
async def test_queued_jobs_show_their_place_then_run_on_their_own_steps(legacy: bool) -> None:
    fake = FakeComfyUI(step_delay=0.03, legacy=legacy, paused=True)  # holds the queue
    jobs = [str(uuid.uuid4()) for _ in range(3)]
    with upstream_and_gateway(fake, comfy_yaml) as (_, server):
        watcher = Watcher()
        await watcher.connect(server.url)
        client = async_sdk(server)
        try:
            for job in jobs:
                await watcher.subscribe(job)
            tasks = []
            for count, job in enumerate(jobs, start=1):  # one after the other: a known order
                tasks.append(asyncio.ensure_future(client.images.generate(
                    model=MODEL, prompt="p", size="256x256", quality="low",
                    extra_headers={"X-Job-Id": job})))
                await until(lambda n=count: len(fake.prompts) == n)
            async with httpx.AsyncClient(base_url=f"{server.url}/v1") as http:
                async def third() -> dict:
                    return (await http.get(f"/images/jobs/{jobs[2]}")).json()
                await until(lambda: watcher_saw(watcher, jobs[2], 3))
                snapshot = await third()
            assert (snapshot["status"], snapshot["queue_position"]) == ("queued", 3)
            fake.paused = False
            results = await asyncio.gather(*tasks)
            for job in jobs:
                await watcher.wait_for(lambda e, j=job: e["job_id"] == j
                                       and e["status"] == "succeeded")
        finally:
            await watcher.close()
    assert all(len(result.data) == 1 for result in results)
    for place, job in enumerate(jobs, start=1):
        check_one(job, [e for e in watcher.events if e["job_id"] == job], place)


def watcher_saw(watcher: Watcher, job: str, position: int) -> bool:
    return any(e["job_id"] == job and e["queue_position"] == position for e in watcher.events)


def check_one(job: str, events: list[dict], place: int) -> None:
    assert_well_formed(events)
    running = next(i for i, e in enumerate(events) if e["status"] == "running")
    waiting = events[:running]
    assert waiting and all(e["status"] == "queued" for e in waiting)
    assert all(e["percent"] == 0 for e in waiting), f"{job}: no percentage before it runs"
    positions = [e["queue_position"] for e in waiting if e["queue_position"] is not None]
    assert positions == list(range(place, 0, -1)), f"{job}: its places, down to next"
    assert all(e["queue_position"] is None for e in events[running:])
    assert not any(e["estimated"] for e in events), "never an estimate"
    steps = [e["step"] for e in events if e["stage"] == "sampling"]
    assert steps == list(range(1, STEPS + 1)), f"{job}: moved by its own sampler steps"
    assert events[-1]["status"] == "succeeded" and events[-1]["percent"] == 100
    if place == 1:
        assert all(e["eta_s"] is None for e in waiting), "no ETA before a run was measured"
