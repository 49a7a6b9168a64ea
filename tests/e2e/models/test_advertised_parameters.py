"""``GET /v1/models`` promises exactly what a model takes: every parameter it advertises, sent
with a value it advertises, is taken (no 400) and used (never dropped), on the default gateway
and on one that serves every provider's catalog models from fake upstreams."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.resources import files
from typing import Any

import httpx
import pytest

from proxy.models.catalog import load_catalog
from tests.support.fakes import google
from tests.support.fakes.azure import FakeAzure
from tests.support.fakes.comfyui import FakeComfyUI
from tests.support.fakes.google import IMAGEN_MODELS, FakeGoogle
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.fakes.providers import providers_yaml
from tests.support.fakes.xai import FakeXAI
from tests.support.gateways import start_gateway
from tests.support.servers import RunningServer
from tests.support.stack import upstreams_and_gateway

VERTEX_TOKEN = "ya29.advertised"


def every_provider_yaml(url: Mapping[str, str]) -> str:
    """Each provider once, against its fake; Imagen and Gemini on both of Google's backends
    (the Gemini API takes less than Vertex AI), ComfyUI with its built-in workflows."""
    vertex = (f"project: {google.PROJECT}, access_token: {VERTEX_TOKEN}, "
              f"base_url: \"{url['google']}\"")
    return f"""
{providers_yaml(url)}models:
  - {{name: local, provider: local}}
  - {{name: vertex/imagen, provider: imagen, upstream_model: imagen-4.0-generate-001,
      api_key: null, {vertex}}}
  - {{name: vertex/gemini, provider: gemini, upstream_model: gemini-3.1-flash-image,
      api_key: null, {vertex}}}
  - name: comfy/sdxl
    provider: comfyui
    base_url: {url["comfyui"]}
    workflow: sdxl_text_to_image
    edit_workflow: sdxl_inpaint
    poll_interval: 0.05
"""


def value_for(name: str, spec: dict[str, Any]) -> Any:
    """A value the descriptor itself offers: the first of its enum, its minimum, or one that
    fits its type and format."""
    if "items" in spec:
        return list(spec["items"]["enum"])  # response_modalities: every value (image included)
    if "enum" in spec:
        enum = spec["enum"]
        return "b64_json" if name == "response_format" and "b64_json" in enum else enum[0]
    kind = spec["type"]
    if kind == "integer":
        return spec.get("minimum", 1)
    if kind == "boolean":
        return False
    if spec.get("format") == "WxH":
        return "1024x1024"
    if spec.get("format") == "W:H":
        return "1:1"
    return "a lighthouse" if name == "prompt" else "x"


def bodies(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every advertised parameter, in as few requests as the documented spellings allow: a
    size and an aspect_ratio both sent is documented to drop one of them, so the ratio goes in
    a request of its own."""
    params = {name: value_for(name, spec) for name, spec in card["parameters"].items()
              if name != "*"}
    ratio = params.pop("aspect_ratio", None)
    out = [{"model": card["id"], **params}]
    if ratio is not None:
        out.append({"model": card["id"], "prompt": params["prompt"], "aspect_ratio": ratio})
    return out


def check_every_model(server: RunningServer) -> list[str]:
    cards = httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"]
    assert cards
    tried = []
    with httpx.Client(timeout=120) as client:
        for card in cards:
            if "*" in card["parameters"]:
                continue  # passthrough: the upstream judges
            if card["provider"] == "imagen" and card["upstream_model"] not in IMAGEN_MODELS:
                continue  # retired upstream: Google (and its fake) answer 404 for any request
            for body in bodies(card):
                response = client.post(f"{server.url}/v1/images/generations", json=body)
                assert response.status_code == 200, (body, response.text)
                assert "x-dropped-params" not in response.headers, (
                    body, response.headers["x-dropped-params"])
            tried.append(card["id"])
    return tried


def test_the_default_gateway_takes_every_parameter_it_advertises() -> None:
    default = files("proxy.config").joinpath("default.yaml").read_text(encoding="utf-8")
    with start_gateway(default) as server:
        assert "local" in check_every_model(server)


@pytest.fixture(scope="module")
def every_provider() -> Iterator[RunningServer]:
    fake_google = FakeGoogle()
    fake_google.static_tokens = {VERTEX_TOKEN}
    # Every Azure catalog model deployed under its own name (the gateway's default deployment).
    deployed = {m.upstream_model: m.upstream_model for m in load_catalog().models_of("azure")}
    apps = {"openai": FakeOpenAI().app, "azure": FakeAzure(deployments=deployed).app,
            "google": fake_google.app, "xai": FakeXAI().app, "comfyui": FakeComfyUI().app}
    with upstreams_and_gateway(apps, every_provider_yaml) as (_, gateway):
        yield gateway


def test_every_served_model_takes_every_parameter_it_advertises(every_provider) -> None:
    tried = check_every_model(every_provider)
    for expected in ("openai/dall-e-3", "google/imagen-4.0-generate-001", "vertex/imagen",
                     "xai/grok-2-image-1212", "comfy/sdxl", "azure/gpt-image-1", "local"):
        assert expected in tried


def test_imagen_advertises_seed_and_negative_prompt_only_where_the_backend_takes_them(
        every_provider) -> None:
    def parameters(model: str) -> dict[str, Any]:
        return httpx.get(f"{every_provider.url}/v1/models/{model}").json()["parameters"]

    gemini_api = parameters("google/imagen-4.0-generate-001")
    assert "seed" not in gemini_api and "negative_prompt" not in gemini_api
    vertex = parameters("vertex/imagen")
    assert "seed" in vertex and "negative_prompt" in vertex


def test_pixel_models_advertise_the_aspect_ratio_they_take(every_provider) -> None:
    card = httpx.get(f"{every_provider.url}/v1/models/openai/dall-e-3").json()
    assert card["parameters"]["aspect_ratio"]["maps_to"] == "size"
