"""Provider ``comfyui`` against a fake ComfyUI server that speaks the real protocol."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

from proxy.core.events import Completed, Image, PartialImage, Progress
from proxy.jobs.job import new_job_id
from proxy.providers.base import Call
from proxy.request.bind import apply_rules
from proxy.request.parse import parse_params
from proxy.service.gateway import Gateway
from tests.support.clients import sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.gateways import gateway_config
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.stack import upstream_and_gateway


def inputs(comfy: FakeComfyUI, job_id: str, node: str) -> dict:
    return comfy.prompt_of(job_id).workflow[node]["inputs"]


# -- through the gateway, with the official SDK ------------------------------------------------


def test_generate_injects_the_request_and_returns_the_batch(comfy) -> None:
    fake, server = comfy
    raw = sdk(server).images.with_raw_response.generate(
        model=MODEL, prompt="a lighthouse in a storm", n=2, size="512x768",
        extra_body={"negative_prompt": "people", "seed": 1234},
    )
    result = raw.parse()
    images = [decode(d.b64_json) for d in result.data]
    assert [(i.format, i.size) for i in images] == [("PNG", (512, 768))] * 2
    body = raw.http_response.json()
    validate("ImagesResponse", body)
    assert body["size"] == "512x768" and body["output_format"] == "png"
    assert body["provider"] == "comfyui"

    prompt_id = raw.headers["x-request-id"]
    assert fake.prompt_of(prompt_id).prompt_id != prompt_id, "a fresh prompt id per attempt"
    assert prompt_id in fake.ws_clients, "the websocket is opened with clientId=<job id>"
    assert inputs(fake, prompt_id, "6")["text"] == "a lighthouse in a storm"
    assert inputs(fake, prompt_id, "7")["text"] == "people"
    assert inputs(fake, prompt_id, "5") == {"width": 512, "height": 768, "batch_size": 2}
    assert inputs(fake, prompt_id, "3")["seed"] == 1234
    assert inputs(fake, prompt_id, "3")["steps"] == 25, "no quality: the workflow's own steps"


def test_seed_is_random_when_absent_and_template_defaults_stay(comfy) -> None:
    fake, server = comfy
    client = sdk(server)
    ids = [client.images.with_raw_response.generate(model=MODEL, prompt="p", size="256x256")
           .headers["x-request-id"] for _ in range(2)]
    seeds = [inputs(fake, i, "3")["seed"] for i in ids]
    assert seeds[0] != seeds[1] and all(isinstance(s, int) for s in seeds)
    # Unset parameters leave the template alone.
    assert inputs(fake, ids[0], "7")["text"] == "blurry, low quality, watermark, text"
    assert inputs(fake, ids[0], "5")["batch_size"] == 1


def test_jpeg_output_is_transcoded_and_quality_picks_steps(comfy) -> None:
    fake, server = comfy
    raw = sdk(server).images.with_raw_response.generate(
        model=MODEL, prompt="p", size="256x128", output_format="jpeg", output_compression=50,
        quality="low")
    result = raw.parse()
    image = decode(result.data[0].b64_json)
    assert image.format == "JPEG" and image.size == (256, 128)
    assert result.output_format == "jpeg" and result.quality == "low"
    assert inputs(fake, raw.headers["x-request-id"], "3")["steps"] == 12


def test_stream_turns_previews_into_partial_images(comfy) -> None:
    _, server = comfy
    events = list(sdk(server).images.generate(model=MODEL, prompt="p", size="512x512",
                                              stream=True, partial_images=2))
    assert [type(e) for e in events] == [ImageGenPartialImageEvent] * 2 + [ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    # Previews arrive as JPEG and are sent in the requested format (png by default).
    assert {decode(e.b64_json).format for e in events[:2]} == {"PNG"}
    final = decode(events[-1].b64_json)
    assert final.format == "PNG" and final.size == (512, 512)


def test_running_out_of_memory_is_the_servers_503_and_is_retried() -> None:
    fake = FakeComfyUI(step_delay=0.005, mode="execution_error")
    with upstream_and_gateway(fake, lambda url: comfy_yaml(
            url, extra="reliability: {retries: 1, backoff_base: 0.01}")) as (_, server), \
            pytest.raises(openai.InternalServerError) as caught:
        sdk(server).images.generate(model=MODEL, prompt="p", size="256x256")
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert error.status_code == 503 and error.code == "upstream_out_of_memory"
    assert error.type == "upstream_error"
    assert "ran out of GPU memory in node 3 (KSampler)" in error.message
    assert "torch.OutOfMemoryError: CUDA out of memory" in error.message
    assert len(fake.prompts) == 2, "transient: retried once (reliability.retries: 1)"


def test_another_execution_error_is_a_502_with_the_exception(comfy) -> None:
    fake, server = comfy
    fake.mode = "execution_error"
    fake.error = ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (2x768 and 2048x1)")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(server).images.generate(model=MODEL, prompt="p", size="256x256")
    error = caught.value
    assert error.status_code == 502 and error.code == "upstream_execution_error"
    assert "node 3 (KSampler): RuntimeError: mat1 and mat2 shapes" in error.message
    assert len(fake.prompts) == 1, "not transient: the same prompt would fail the same way"


def test_websocket_lost_mid_job_still_succeeds_through_history(comfy) -> None:
    fake, server = comfy
    fake.mode, fake.step_delay = "drop_ws", 0.02
    raw = sdk(server).images.with_raw_response.generate(model=MODEL, prompt="p", n=2,
                                                        size="320x240")
    result = raw.parse()
    assert [decode(d.b64_json).size for d in result.data] == [(320, 240)] * 2
    assert fake.prompt_of(raw.headers["x-request-id"]).status == "success"
    assert fake.history_reads >= 2, "the job was followed through /history"


def test_a_prompt_the_server_forgot_fails_instead_of_polling_forever(comfy) -> None:
    fake, server = comfy
    fake.mode = "lose"
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(server).images.generate(model=MODEL, prompt="p", size="256x256")
    assert caught.value.status_code == 502 and caught.value.code == "upstream_lost"


def test_an_interrupt_by_someone_else_is_a_502_cancelled(comfy) -> None:
    fake, server = comfy
    url = comfy.upstream.url
    fake.step_delay = 0.05
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(sdk(server).images.generate, model=MODEL, prompt="p",
                             size="256x256")
        deadline = time.monotonic() + 5
        while not any(p.status == "running" for p in fake.prompts.values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        httpx.post(f"{url}/interrupt", timeout=5)  # a global interrupt, no body
        with pytest.raises(openai.InternalServerError) as caught:
            future.result(timeout=10)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_cancelled"
    assert "interrupted" in caught.value.message


def test_client_gone_mid_stream_interrupts_the_running_prompt(comfy) -> None:
    fake, server = comfy
    fake.step_delay = 0.05  # 25 steps: over a second of sampling
    with httpx.stream("POST", f"{server.url}/v1/images/generations", timeout=30, json={
        "model": MODEL, "prompt": "p", "size": "256x256", "stream": True, "partial_images": 3,
    }) as response:
        job_id = response.headers["x-request-id"]
        first = next(response.iter_bytes())
        assert first.startswith(b"id: 1\nevent: image_generation.partial_image")
    prompt = fake.prompt_of(job_id)
    deadline = time.monotonic() + 5
    while prompt.status == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert prompt.status == "interrupted"
    assert fake.interrupts == [prompt.prompt_id], "a running prompt is interrupted by its id"
    assert fake.queue_deletes == []


def test_client_gone_mid_json_request_interrupts_the_prompt(comfy) -> None:
    fake, server = comfy
    fake.step_delay = 0.05
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/images/generations", timeout=0.4,
                   json={"model": MODEL, "prompt": "p", "size": "256x256"})
    (prompt,) = fake.prompts.values()
    deadline = time.monotonic() + 5
    while prompt.status == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert prompt.status == "interrupted" and fake.interrupts == [prompt.prompt_id]


def test_job_over_its_total_time_is_a_504_and_is_interrupted() -> None:
    with upstream_and_gateway(FakeComfyUI(step_delay=0.2),
                              lambda url: comfy_yaml(url, total=1)) as (comfy, server), \
            pytest.raises(openai.InternalServerError) as caught:
        sdk(server).images.generate(model=MODEL, prompt="p", size="256x256")
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    assert comfy.interrupts == [comfy.prompt_of(caught.value.request_id).prompt_id]


# -- the adapter's own events ------------------------------------------------------------------


async def test_progress_is_monotonic_with_sampler_steps(fake_comfyui) -> None:
    _, url = fake_comfyui
    gateway = Gateway.from_config(gateway_config(comfy_yaml(url)))
    await gateway.start()
    try:
        served = gateway.models.resolve(MODEL)
        known, unknown = parse_params({"prompt": "p", "size": "256x256", "stream": True,
                                       "partial_images": 1, "output_format": "webp"})
        request = apply_rules(known, unknown, MODEL, served.rules, drop_unsupported=False)
        call = Call(new_job_id(), "generation", request)
        events = [e async for e in served.provider.generate(call)]
    finally:
        await gateway.aclose()
    progress = [e for e in events if isinstance(e, Progress)]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert progress[0].stage == "queued"
    steps = [(p.step, p.total_steps) for p in progress if p.stage == "sampling"]
    assert steps == [(s, 25) for s in range(1, 26)]
    partials = [e for e in events if isinstance(e, PartialImage)]
    assert len(partials) == 1 and decode(partials[0].b64_json).format == "WEBP"
    assert [type(e) for e in events[-2:]] == [Image, Completed]
    assert events[-1].resolved == {"size": "256x256", "output_format": "webp"}
