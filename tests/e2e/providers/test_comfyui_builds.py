"""Provider ``comfyui`` against both kinds of ComfyUI build the fake can be: a current one, and an
older one that makes up its own ``prompt_id``, whose ``/interrupt`` stops whatever runs and which
ends a prompt with ``execution_success`` alone. The gateway follows the id ComfyUI answers with,
ends a run on either end message, and never stops another client's prompt."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.clients import sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.images import decode
from tests.support.paths import COMFYUI_WORKFLOWS
from tests.support.stack import upstream_and_gateway

BUILDS = pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])


def wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def foreign_prompt(url: str, steps: int = 25) -> str:
    """Another client's prompt, straight to ComfyUI; its id."""
    graph = json.loads((COMFYUI_WORKFLOWS / "sdxl_text_to_image.json").read_text())
    graph["3"]["inputs"]["steps"] = steps
    answer = httpx.post(f"{url}/prompt", json={"prompt": graph, "client_id": "someone-else"},
                        timeout=5)
    assert answer.status_code == 200
    return answer.json()["prompt_id"]


@BUILDS
def test_a_job_is_followed_by_the_id_comfyui_answers_with(legacy: bool) -> None:
    fake = FakeComfyUI(step_delay=0.005, legacy=legacy)
    with upstream_and_gateway(fake, lambda url: comfy_yaml(url, total=5)) as (_, server):
        raw = sdk(server).images.with_raw_response.generate(model=MODEL, prompt="p",
                                                            size="256x256")
    assert decode(raw.parse().data[0].b64_json).size == (256, 256)
    prompt = fake.prompt_of(raw.headers["x-request-id"])
    assert (prompt.prompt_id != fake.sent_ids[-1]) is legacy, "legacy: the server's own id"
    assert prompt.status == "success" and fake.history_reads == 0, "ended on a message"


@pytest.mark.parametrize(("success", "done"), [(True, False), (False, True)],
                         ids=["execution_success-only", "executing-null-only"])
def test_either_end_message_ends_the_run(success: bool, done: bool) -> None:
    fake = FakeComfyUI(step_delay=0.005, success_message=success, done_message=done)
    with upstream_and_gateway(fake, lambda url: comfy_yaml(url, total=5)) as (_, server):
        result = sdk(server).images.generate(model=MODEL, prompt="p", size="256x256")
    assert len(result.data) == 1 and fake.history_reads == 0


@BUILDS
def test_the_websocket_lost_on_an_older_build_is_followed_by_its_id(legacy: bool) -> None:
    fake = FakeComfyUI(step_delay=0.02, legacy=legacy, mode="drop_ws")
    with upstream_and_gateway(fake, lambda url: comfy_yaml(url, total=5)) as (_, server):
        result = sdk(server).images.generate(model=MODEL, prompt="p", size="320x240")
    assert decode(result.data[0].b64_json).size == (320, 240)
    assert fake.history_reads >= 2


@BUILDS
def test_cancelling_a_queued_job_never_touches_the_running_one(legacy: bool) -> None:
    fake = FakeComfyUI(step_delay=0.04, legacy=legacy)
    with upstream_and_gateway(fake, comfy_yaml) as stack:
        theirs = foreign_prompt(stack.upstream.url)  # 25 steps: a second of sampling
        wait_until(lambda: fake.prompts[theirs].status == "running")
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while its job waits
            httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=0.4,
                       json={"model": MODEL, "prompt": "p", "size": "256x256"})
        ours = next(p for p in fake.prompts.values() if p.prompt_id != theirs)
        wait_until(lambda: ours.status == "deleted")
        wait_until(lambda: fake.prompts[theirs].status != "running")
    assert fake.prompts[theirs].status == "success", "the other client's prompt ran on"
    assert fake.queue_deletes == [ours.prompt_id] and fake.interrupts == []


@BUILDS
def test_cancelling_a_running_job_interrupts_it(legacy: bool) -> None:
    fake = FakeComfyUI(step_delay=0.05, legacy=legacy)
    with upstream_and_gateway(fake, comfy_yaml) as (_, server):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/images/generations", timeout=0.4,
                       json={"model": MODEL, "prompt": "p", "size": "256x256"})
        (prompt,) = fake.prompts.values()
        wait_until(lambda: prompt.status != "running")
    assert prompt.status == "interrupted" and fake.interrupts == [prompt.prompt_id]
    assert fake.queue_deletes == []


@pytest.mark.parametrize(("grace", "succeeds"), [(10, True), (0, False)])
def test_failed_polls_are_retried_within_the_grace(grace: float, succeeds: bool) -> None:
    fake = FakeComfyUI(step_delay=0.02, mode="drop_ws", history_failures=3)
    with upstream_and_gateway(fake, lambda url: comfy_yaml(
            url, extra=f"    poll_grace: {grace}")) as (_, server):
        answer = httpx.post(f"{server.url}/v1/images/generations", timeout=10,
                            json={"model": MODEL, "prompt": "p", "size": "256x256"})
    if succeeds:
        assert answer.status_code == 200 and fake.history_reads >= 4
    else:
        error = answer.json()["error"]
        assert answer.status_code == 502 and "answered HTTP 503" in error["message"]
        assert "stopped answering while it ran the job" in error["message"]
