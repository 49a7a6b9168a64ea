"""ComfyUI as a real long-running backend: its progress on Socket.IO, one update per sampler
step. (Its previews streamed over SSE with keep-alives: ``tests/e2e/streaming/``.)"""

from __future__ import annotations

import uuid

from tests.support.clients import async_sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.progress_client import Watcher, assert_well_formed


async def test_socket_progress_rises_to_100_for_a_comfyui_job(comfy) -> None:
    _, server = comfy
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(server.url)
    try:
        assert (await watcher.subscribe(job_id))["snapshot"] is None
        result = await async_sdk(server).images.generate(
            model=MODEL, prompt="a red barn", size="256x256",
            extra_headers={"X-Job-Id": job_id})
        assert len(result.data) == 1
        final = await watcher.wait_for(lambda e: e["status"] == "succeeded")
    finally:
        await watcher.close()
    assert final["percent"] == 100
    assert_well_formed(watcher.events)
    sampling = [e for e in watcher.events if e["stage"] == "sampling"]
    assert [e["step"] for e in sampling] == list(range(1, 26)), "one update per sampler step"
    assert all(not e["estimated"] for e in watcher.events)
