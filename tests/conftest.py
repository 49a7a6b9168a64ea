"""Shared fixtures: real gateways under uvicorn, fake upstreams, official SDK clients."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import openai
import pytest
from starlette.types import ASGIApp

from proxy.app import create_app
from proxy.config import GatewayConfig, load_config_text, load_default_config
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.schemas import validate
from tests.servers import RunningServer, serve

GatewayFactory = Callable[[str], AbstractContextManager[RunningServer]]


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gateways started by tests keep their ledger and files here, never in the home folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("IMAGE_PROXY_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    yield
    patch.undo()


# Tests that check how one upstream answer is mapped must see that answer: their gateways do
# not retry and keep circuits closed, unless a test configures `reliability:` itself.
TEST_RELIABILITY = "reliability: {retries: 0, circuit_failures: 1000000}\n"


def gateway_config(text: str, **kwargs: Any) -> GatewayConfig:
    if not re.search(r"^reliability:", text, re.M):
        text = TEST_RELIABILITY + text
    return load_config_text(text, **kwargs)


def gateway_app(text: str) -> ASGIApp:
    return create_app(gateway_config(text))


@contextmanager
def _gateway_from_yaml(text: str) -> Iterator[RunningServer]:
    with serve(gateway_app(text)) as server:
        yield server


@pytest.fixture
def start_gateway() -> GatewayFactory:
    """Start a gateway from YAML text: ``with start_gateway(yaml) as server: ...``."""
    return _gateway_from_yaml


@pytest.fixture(scope="session")
def local_gateway() -> Iterator[RunningServer]:
    """The embedded default configuration (the local renderer), shared by the session."""
    with serve(create_app(load_default_config())) as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with serve(fake.app) as server:
        yield fake, f"{server.url}/v1"


def openai_models_yaml(base_url: str, *, first_byte: float = 600.0, total: float = 900.0) -> str:
    """Config for models behind the fake OpenAI upstream."""
    return f"""
models:
  - name: openai/gpt-image-1
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
    timeout: {{connect: 5, first_byte: {first_byte}, total: {total}}}
  - name: openai/gpt-image-2
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
  - name: openai/dall-e-3
    provider: openai
    base_url: {base_url}
    api_key: {API_KEY}
  - name: compatible/flux
    provider: openai
    upstream_model: flux-dev
    base_url: {base_url}
    api_key: {API_KEY}
  - name: openai/bad-key
    provider: openai
    upstream_model: gpt-image-1
    base_url: {base_url}
    api_key: sk-wrong
"""


@pytest.fixture
def openai_gateway(fake_openai, start_gateway) -> Iterator[tuple[FakeOpenAI, RunningServer]]:
    fake, base_url = fake_openai
    with start_gateway(openai_models_yaml(base_url, first_byte=2, total=5)) as server:
        yield fake, server


def sdk(server: RunningServer) -> openai.OpenAI:
    # max_retries=0: a test must see our first answer, not the SDK's retry of it.
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                         timeout=60)


def expect_error(server: RunningServer, exc_type: type[openai.APIStatusError], *,
                 prompt: str = "p", **kwargs) -> openai.APIStatusError:
    """Generate through the SDK expecting ``exc_type``; the error body must be OpenAI's
    envelope and the response must carry an x-request-id."""
    with pytest.raises(exc_type) as caught:
        sdk(server).images.generate(prompt=prompt, **kwargs)
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert error.request_id, "every error carries x-request-id"
    return error


def async_sdk(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                              timeout=60)


COMFY_MODEL = "comfy/sdxl"


def comfy_yaml(base_url: str, *, workflow: str = "sdxl_text_to_image", total: float = 20,
               extra: str = "") -> str:
    return f"""
models:
  - name: {COMFY_MODEL}
    provider: comfyui
    base_url: {base_url}
    workflow: {workflow}
    poll_interval: 0.05
    timeout: {{connect: 5, first_byte: 10, total: {total}}}
{extra}
"""


@pytest.fixture
def fake_comfyui() -> Iterator[tuple[FakeComfyUI, str]]:
    comfy = FakeComfyUI(step_delay=0.005)
    with serve(comfy.app) as server:
        yield comfy, server.url


@pytest.fixture
def comfy(fake_comfyui, start_gateway) -> Iterator[tuple[FakeComfyUI, RunningServer]]:
    comfy, url = fake_comfyui
    with start_gateway(comfy_yaml(url)) as server:
        yield comfy, server
