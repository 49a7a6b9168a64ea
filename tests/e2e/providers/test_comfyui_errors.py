"""ComfyUI's refusals sorted by who must act: a value the client chose that the workflow refuses
is the client's 400; a server that lacks a checkpoint or a custom node is the operator's 502,
with a message saying what to fix, retried and handed to fallback models."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.support.clients import sdk
from tests.support.fakes.comfyui import COMFY_MODEL as MODEL
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.paths import COMFYUI_WORKFLOWS
from tests.support.schemas import validate
from tests.support.stack import upstream_and_gateway

RETRY_ONCE = "reliability: {retries: 1, backoff_base: 0.01}"


def custom_workflow(tmp_path: Path, node_id: str, node: dict) -> str:
    workflow = json.loads((COMFYUI_WORKFLOWS / "sdxl_text_to_image.json").read_text())
    workflow[node_id] = node
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(workflow))
    return str(path)


@pytest.mark.parametrize(("node_id", "node", "expected", "advice"), [
    ("10", {"class_type": "FancyUpscaler", "inputs": {}},
     "missing_node_type: Node 'FancyUpscaler' not found",
     "Install the custom node that provides it on that server"),
    ("4", {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nope.ckpt"}},
     "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'nope.ckpt'",
     "A model file the workflow names is not installed on that server"),
])
def test_what_the_server_lacks_is_the_operators_502_and_is_retried(
        tmp_path, node_id, node, expected, advice) -> None:
    path = custom_workflow(tmp_path, node_id, node)
    extra = f"""    inputs: {{prompt: ["6", text], seed: ["3", seed]}}\n{RETRY_ONCE}"""
    with upstream_and_gateway(FakeComfyUI(step_delay=0.005), lambda url: comfy_yaml(
            url, workflow=path, extra=extra)) as stack:
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(stack.gateway).images.generate(model=MODEL, prompt="p")
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert (error.status_code, error.type, error.code) == (
        502, "upstream_error", "upstream_misconfigured")
    assert f"The ComfyUI server at 127.0.0.1:{stack.upstream.port} cannot run model " \
           f"'{MODEL}''s workflow" in error.message
    assert expected in error.message and advice in error.message
    assert stack.fake.prompt_posts == 2, "transient: retried once (reliability.retries: 1)"
    assert not stack.fake.prompts, "nothing was ever queued"


def test_a_fallback_model_serves_when_the_server_lacks_the_checkpoint(tmp_path) -> None:
    path = custom_workflow(tmp_path, "4", {"class_type": "CheckpointLoaderSimple",
                                           "inputs": {"ckpt_name": "nope.ckpt"}})

    def config(url: str) -> str:
        return comfy_yaml(url, workflow=path, extra=(
            '    inputs: {prompt: ["6", text], seed: ["3", seed]}\n    fallbacks: [local]\n'
            "  - {name: local, provider: local}\nreliability: {retries: 0}"))

    with upstream_and_gateway(FakeComfyUI(step_delay=0.005), config) as (comfy, server):
        raw = sdk(server).images.with_raw_response.generate(model=MODEL, prompt="p",
                                                            size="64x64")
    body = raw.http_response.json()
    assert (body["provider"], body["model"]) == ("local", "local")
    assert comfy.prompt_posts == 1 and not comfy.prompts


def test_a_value_the_client_chose_that_the_workflow_refuses_is_its_400() -> None:
    fake = FakeComfyUI(step_delay=0.005, max_size=2048)  # a server whose latent stops at 2048
    with upstream_and_gateway(fake, lambda url: comfy_yaml(url, extra=RETRY_ONCE)) as (
            _, server), pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.generate(model=MODEL, prompt="p", size="4096x1024")
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert (error.status_code, error.type, error.param, error.code) == (
        400, "invalid_request_error", "size", "invalid_value")
    assert "node 5 (EmptyLatentImage): Value 4096 bigger than max of 2048: width" in \
        error.message
    assert fake.prompt_posts == 1, "a client's mistake is not retried"
