"""Long ComfyUI jobs streamed over SSE: silences longer than the client's read timeout are
bridged by the gateway's keep-alive comments."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.servers import serve


@pytest.mark.timeout(300)
async def test_two_minute_job_streams_previews_kept_alive_by_comments(start_gateway) -> None:
    """A job of ~2 minutes over SSE: the connection stays alive through silences longer than
    the client's read timeout because the gateway sends comment keep-alives, and a
    browser-style consumer (POST + a standard SSE parser, as fetch() streams do) sees the
    partial images made from ComfyUI's previews, then the final image."""
    fake = FakeComfyUI(step_delay=3.0)  # "high" quality = 40 steps = 120 s of sampling
    with serve(fake.app) as comfy_server, \
            start_gateway(comfy_yaml(comfy_server.url, total=300)) as server:
        started = time.monotonic()
        events = []
        # The read timeout (20 s) is shorter than the silences between previews (~40 s): only
        # the keep-alive comments (every 15 s) keep this connection from timing out.
        async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client, aconnect_sse(
                client, "POST", f"{server.url}/v1/images/generations",
                json={"model": MODEL, "prompt": "a lighthouse", "size": "256x256",
                      "quality": "high", "stream": True, "partial_images": 2}) as source:
            async for sse in source.aiter_sse():
                events.append((sse.event, sse.json(), time.monotonic() - started))
        elapsed = time.monotonic() - started
    assert elapsed >= 115
    assert [(name, data["type"]) for name, data, _ in events] == [
        ("image_generation.partial_image", "image_generation.partial_image")] * 2 + [
        ("image_generation.completed", "image_generation.completed")]
    arrivals = [at for _, _, at in events]
    assert arrivals[1] - arrivals[0] > 20 and arrivals[2] - arrivals[1] > 20, \
        "silences longer than the read timeout were bridged by keep-alives"
    for _, data, _ in events:
        assert base64.b64decode(data["b64_json"])[:4] == b"\x89PNG"
