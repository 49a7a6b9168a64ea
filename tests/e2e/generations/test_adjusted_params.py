"""Never silent about geometry: a ratio a model does not offer is a 400 naming the parameter,
and a parameter turned from one spelling into the other (a size into a ratio and tier, a ratio
into a size) is announced in ``x-adjusted-params`` on every kind of answer."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping

import httpx
import pytest

from tests.support.fakes import google, openai_upstream, xai
from tests.support.fakes.google import FakeGoogle
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.fakes.xai import FakeXAI
from tests.support.fetch_targets import PNG
from tests.support.servers import RunningServer
from tests.support.stack import upstreams_and_gateway


class Upstreams:
    def __init__(self) -> None:
        self.openai, self.google, self.xai = FakeOpenAI(), FakeGoogle(), FakeXAI()

    def sent(self) -> int:
        return len(self.openai.requests) + len(self.google.requests) + len(self.xai.calls)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Upstreams, RunningServer]]:
    fakes = Upstreams()

    def gateway_yaml(url: Mapping[str, str]) -> str:
        return f"""
providers:
  openai: {{api_key: {openai_upstream.API_KEY}, base_url: "{url["openai"]}/v1"}}
  gemini: {{api_key: {google.API_KEY}, base_url: "{url["google"]}"}}
  imagen: {{api_key: {google.API_KEY}, base_url: "{url["google"]}"}}
  xai: {{api_key: {xai.API_KEY}, base_url: "{url["xai"]}/v1"}}
"""

    apps = {"openai": fakes.openai.app, "google": fakes.google.app, "xai": fakes.xai.app}
    with upstreams_and_gateway(apps, gateway_yaml) as (_, gateway):
        yield fakes, gateway


def post(server: RunningServer, body: dict, path: str = "/v1/images/generations",
         **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)


@pytest.mark.parametrize(("model", "ratio", "offered"), [
    ("google/gemini-2.5-flash-image", "1:4", "'9:16'"),
    ("google/gemini-2.5-flash-image", "5:2", "'21:9'"),
    ("google/imagen-4.0-generate-001", "3:2", "'4:3'"),
    ("xai/grok-imagine-image", "21:9", "'20:9'"),
])
def test_an_aspect_ratio_the_model_does_not_offer_is_refused_naming_it(stack, model, ratio,
                                                                       offered) -> None:
    fakes, server = stack
    before = fakes.sent()
    for spelling in ("aspect_ratio", "aspectRatio"):
        response = post(server, {"model": model, "prompt": "p", spelling: ratio})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        # Named as the gateway names it, whichever spelling was sent (as for every error).
        assert (error["param"], error["code"]) == ("aspect_ratio", "invalid_value")
        assert f"'{ratio}'" in error["message"] and offered in error["message"]
    assert fakes.sent() == before, "nothing was sent upstream"


def test_the_same_ratio_spelt_otherwise_is_taken_and_announced(stack) -> None:
    fakes, server = stack
    response = post(server, {"model": "google/gemini-2.5-flash-image", "prompt": "p",
                             "aspect_ratio": "7:3"})
    assert response.status_code == 200, response.text
    assert response.headers["x-adjusted-params"] == "aspect_ratio=7:3->aspect_ratio=21:9"
    sent = fakes.google.generation_requests()[-1].body
    assert sent["generationConfig"]["imageConfig"]["aspectRatio"] == "21:9"
    exact = post(server, {"model": "google/gemini-2.5-flash-image", "prompt": "p",
                          "aspect_ratio": "21:9"})
    assert exact.status_code == 200 and "x-adjusted-params" not in exact.headers


SIZE_TO_RATIO = "size=1536x1024->aspect_ratio=3:2,resolution=2K"
GEMINI_PRO = {"model": "google/gemini-3-pro-image", "prompt": "p", "size": "1536x1024"}


def test_a_size_mapped_to_ratio_and_tier_is_announced_on_json(stack) -> None:
    fakes, server = stack
    response = post(server, GEMINI_PRO)
    assert response.status_code == 200, response.text
    assert response.headers["x-adjusted-params"] == SIZE_TO_RATIO
    config = fakes.google.generation_requests()[-1].body["generationConfig"]["imageConfig"]
    assert config == {"aspectRatio": "3:2", "imageSize": "2K"}


def test_a_size_mapped_to_ratio_and_tier_is_announced_on_sse(stack) -> None:
    _, server = stack
    with httpx.stream("POST", f"{server.url}/v1/images/generations", timeout=60,
                      json={**GEMINI_PRO, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-adjusted-params"] == SIZE_TO_RATIO
        response.read()


def test_a_size_mapped_to_ratio_and_tier_is_announced_on_async(stack) -> None:
    _, server = stack
    response = post(server, GEMINI_PRO, prefer="respond-async")
    assert response.status_code == 202, response.text
    assert response.headers["x-adjusted-params"] == SIZE_TO_RATIO


def test_a_size_mapped_to_ratio_and_tier_is_announced_on_edits(stack) -> None:
    _, server = stack
    image = base64.b64encode(PNG).decode()
    response = post(server, {**GEMINI_PRO, "image": image}, path="/v1/images/edits")
    assert response.status_code == 200, response.text
    assert response.headers["x-adjusted-params"] == SIZE_TO_RATIO


def test_an_aspect_ratio_mapped_to_a_size_is_announced(stack) -> None:
    fakes, server = stack
    response = post(server, {"model": "openai/gpt-image-1", "prompt": "p",
                             "aspectRatio": "16:9"})
    assert response.status_code == 200, response.text
    assert response.headers["x-adjusted-params"] == "aspect_ratio=16:9->size=1536x1024"
    assert fakes.openai.requests[-1].body["size"] == "1536x1024"


def test_a_square_ratio_on_dall_e_2_is_its_default_size(stack) -> None:
    """dall-e-2 lists three squares: a 1:1 ratio is its default 1024x1024, not the smallest."""
    fakes, server = stack
    response = post(server, {"model": "openai/dall-e-2", "prompt": "p", "aspectRatio": "1:1"})
    assert response.status_code == 200, response.text
    assert fakes.openai.requests[-1].body["size"] == "1024x1024"
    assert response.headers["x-adjusted-params"] == "aspect_ratio=1:1->size=1024x1024"


def test_the_adjusted_header_is_in_the_openapi_document(stack) -> None:
    _, server = stack
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert "->" in document["components"]["headers"]["AdjustedParams"]["description"]
    ok = document["paths"]["/v1/images/generations"]["post"]["responses"]
    assert "x-adjusted-params" in ok["200"]["headers"] and "x-adjusted-params" in ok["202"][
        "headers"]
