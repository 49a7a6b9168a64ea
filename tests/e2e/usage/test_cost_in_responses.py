"""Costs reported where clients see them: in each response body, and from config overrides.

The figures are the hand-computed ones of ``tests/unit/billing/test_cost.py``."""

from __future__ import annotations

import pytest

from tests.support.clients import sdk
from tests.support.fakes.comfyui import FakeComfyUI
from tests.support.stack import upstream_and_gateway


def test_config_pricing_overrides() -> None:
    def priced(url: str) -> str:
        return f"""
models:
  - name: comfy
    provider: comfyui
    base_url: {url}
    pricing: {{per_image: {{"*": {{"*": 0.0025}}}}, source: "our GPU hour / images per hour"}}
"""

    with upstream_and_gateway(FakeComfyUI(step_delay=0.005), priced) as (_, server):
        result = sdk(server).images.with_raw_response.generate(model="comfy", prompt="p", n=2,
                                                               size="256x256")
    assert result.http_response.json()["cost"] == pytest.approx(0.005)


def test_responses_carry_the_cost(openai_gateway, local_gateway) -> None:
    _, server = openai_gateway
    body = sdk(server).images.with_raw_response.generate(
        model="openai/gpt-image-1", prompt="p").http_response.json()
    # The fake reports 12 text tokens in and 272 image tokens out (see tests/support/fakes).
    assert body["cost"] == pytest.approx(0.01094)
    local = sdk(local_gateway).images.with_raw_response.generate(
        model="local", prompt="p", size="64x64").http_response.json()
    assert local["cost"] == 0
