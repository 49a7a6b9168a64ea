"""One gateway for the conformance tests: every provider configured once (providers:), each
against its fake upstream on loopback, a key, and an image server the fetcher may reach."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.auth import new_key
from tests.support.fakes import openai_upstream
from tests.support.fakes.azure import FakeAzure
from tests.support.fakes.google import FakeGoogle
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.fakes.providers import providers_yaml
from tests.support.fakes.xai import FakeXAI
from tests.support.servers import RunningServer
from tests.support.stack import upstreams_and_gateway

KEY, KEY_HASH = new_key()


def photo_server() -> Starlette:
    """Stands in for the photo hosts the documents' samples point at: a JPEG at any path."""
    buffer = io.BytesIO()
    Image.new("RGB", (960, 640), (90, 140, 200)).save(buffer, "JPEG")
    photo = buffer.getvalue()

    async def any_path(request: Request) -> Response:
        return Response(photo, media_type="image/jpeg")

    return Starlette(routes=[Route("/{path:path}", any_path)])


@dataclass
class Conformance:
    gateway: RunningServer
    images: RunningServer
    openai: FakeOpenAI
    google: FakeGoogle

    def post(self, path: str, body: dict) -> httpx.Response:
        """As the documents' cURL samples do: JSON body, bearer key."""
        return httpx.post(f"{self.gateway.url}{path}", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}",
                                   "Content-Type": "application/json"})

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.gateway.url}{path}", params=params, timeout=60,
                         headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture(scope="session")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conformance]:
    fakes = {"openai": FakeOpenAI(), "azure": FakeAzure(), "google": FakeGoogle(),
             "xai": FakeXAI()}
    data_dir = tmp_path_factory.mktemp("conformance")

    def gateway_yaml(url: Mapping[str, str]) -> str:
        images = url["images"].removeprefix("http://")
        return f"""
data_dir: {data_dir}
keys: [{{name: conformance, key_sha256: {KEY_HASH}, capabilities: [admin]}}]
fetch: {{allow_hosts: ["{images}"]}}
{providers_yaml(url)}models:
  # An OpenAI-compatible server's own model: no published price.
  - {{name: compatible/unpriced, provider: openai, upstream_model: house-model,
      base_url: "{url["openai"]}/v1", api_key: {openai_upstream.API_KEY}}}
"""

    apps = {name: fake.app for name, fake in fakes.items()} | {"images": photo_server()}
    with upstreams_and_gateway(apps, gateway_yaml) as (upstreams, gateway):
        yield Conformance(gateway, upstreams["images"], fakes["openai"], fakes["google"])
