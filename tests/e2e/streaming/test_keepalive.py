"""Long ComfyUI jobs streamed over SSE: silences longer than the client's read timeout are
bridged by the gateway's keep-alive comments.

Time is scaled down from the real thing (a two-minute job, previews ~40 s apart, a 20 s read
timeout, a keep-alive every 15 s) by the same factors, so it runs in seconds: what matters is
the order keep-alive interval < read timeout < silence between previews."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import pytest
from httpx_sse import aconnect_sse

from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.fakes.openai_upstream import FakeOpenAI, openai_models_yaml
from tests.support.stack import upstream_and_gateway

STEP_DELAY = 0.1  # seconds per sampler step; "high" quality = 40 steps = 4 s of sampling
SILENCE = 40 * STEP_DELAY / 3  # two partial images: one every third of the sampling, ~1.3 s
READ_TIMEOUT = 0.5  # the client's: shorter than every silence between previews
KEEPALIVE = 0.1  # server.sse_keepalive: a comment well within the read timeout


@pytest.mark.timeout(60)
async def test_long_job_streams_previews_kept_alive_by_comments() -> None:
    """A job much longer than the client's read timeout, over SSE: the connection stays alive
    through silences longer than that timeout because the gateway sends comment keep-alives,
    and a browser-style consumer (POST + a standard SSE parser, as fetch() streams do) sees the
    partial images made from ComfyUI's previews, then the final image."""
    assert KEEPALIVE < READ_TIMEOUT < SILENCE / 2

    def gateway_yaml(url: str) -> str:
        return comfy_yaml(url, total=60, extra=f"server: {{sse_keepalive: {KEEPALIVE}}}")

    with upstream_and_gateway(FakeComfyUI(step_delay=STEP_DELAY), gateway_yaml) as stack:
        started = time.monotonic()
        events = []
        # Only the keep-alive comments keep this connection from timing out between previews.
        async with httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT)) as client, \
                aconnect_sse(client, "POST", f"{stack.gateway.url}/v1/images/generations",
                             json={"model": MODEL, "prompt": "a lighthouse", "size": "256x256",
                                   "quality": "high", "stream": True,
                                   "partial_images": 2}) as source:
            async for sse in source.aiter_sse():
                events.append((sse.event, sse.json(), time.monotonic() - started))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.95 * 40 * STEP_DELAY, "the job sampled all 40 steps"
    assert [(name, data["type"]) for name, data, _ in events] == [
        ("image_generation.partial_image", "image_generation.partial_image")] * 2 + [
        ("image_generation.completed", "image_generation.completed")]
    arrivals = [at for _, _, at in events]
    assert arrivals[1] - arrivals[0] > READ_TIMEOUT and arrivals[2] - arrivals[1] > READ_TIMEOUT, \
        "silences longer than the read timeout were bridged by keep-alives"
    for _, data, _ in events:
        assert base64.b64decode(data["b64_json"])[:4] == b"\x89PNG"


def test_the_sdk_reads_numbered_events_through_keep_alives() -> None:
    """Every event carries ``id:``, and decoders keep the last id and dispatch an event at every
    blank line once they have one: a keep-alive comment followed by a blank line would reach the
    official SDK as an event with empty data (``JSONDecodeError``). Keep-alives are lone comment
    lines, so the SDK reads the stream through them."""
    def gateway_yaml(url: str) -> str:
        return openai_models_yaml(f"{url}/v1") + "server: {sse_keepalive: 0.05}\n"

    with upstream_and_gateway(FakeOpenAI(event_gap=0.3), gateway_yaml) as stack:
        client = openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key="unused",
                               max_retries=0, timeout=30)
        kinds = [event.type for event in client.images.generate(
            model="openai/gpt-image-1", prompt="p", stream=True, partial_images=2)]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
