"""``GET /v1/models``: what is served, described from the catalog; every alias resolves."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.models.catalog import load_catalog
from proxy.request.describe import describe_parameters
from tests.support.clients import sdk
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.servers import RunningServer
from tests.support.stack import upstream_and_gateway

PROVIDERS = ("openai", "azure", "gemini", "imagen", "xai")


def catalog_yaml(url: str) -> str:
    """Every provider configured once (openai against the fake), and ``local``."""
    return f"""
providers:
  openai: {{api_key: {API_KEY}, base_url: "{url}/v1"}}
  azure: {{endpoint: "https://example.openai.azure.com", api_key: az-key}}
  gemini: {{api_key: gm-key}}
  imagen: {{project: my-project, access_token: ya29.test}}
  xai: {{api_key: xai-key}}
models:
  - {{name: local, provider: local}}
"""


@pytest.fixture
def catalog_gateway() -> Iterator[RunningServer]:
    with upstream_and_gateway(FakeOpenAI(), catalog_yaml) as stack:
        yield stack.gateway


def test_models_are_the_catalog_and_their_parameters(catalog_gateway) -> None:
    catalog = load_catalog()
    body = httpx.get(f"{catalog_gateway.url}/v1/models").json()
    assert body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    expected = {m.name for p in PROVIDERS for m in catalog.models_of(p)} | {"local"}
    assert set(cards) == expected
    for entry in (m for p in PROVIDERS for m in catalog.models_of(p)):
        card = cards[entry.name]
        assert card["object"] == "model" and card["provider"] == entry.provider
        assert card["upstream_model"] == entry.upstream_model
        assert card["aliases"] == entry.aliases
        assert card["parameters"] == describe_parameters(catalog.rules_of(entry))
        assert card["pricing"]["source"] and card["pricing"]["taken"]
    assert cards["openai/dall-e-3"]["parameters"]["n"] == {"type": "integer", "minimum": 1,
                                                           "maximum": 1}
    assert cards["openai/dall-e-3"]["parameters"]["style"]["enum"] == ["vivid", "natural"]
    assert "style" not in cards["openai/gpt-image-1"]["parameters"]
    assert cards["openai/gpt-image-2"]["parameters"]["size"]["range"]["multiple_of"] == 16
    assert cards["local"]["capabilities"]["streaming"] == "native"
    flash = cards["google/gemini-3.1-flash-image"]["parameters"]
    assert flash["thinking_level"]["enum"] == ["minimal", "high"]
    assert flash["size"]["maps_to"] == "aspect_ratio" and "4K" in flash["resolution"]["enum"]
    assert cards["google/imagen-4.0-generate-001"]["capabilities"]["edits"] is False


def test_every_alias_resolves_through_the_sdk(catalog_gateway) -> None:
    client = sdk(catalog_gateway)
    listed = client.models.list()
    assert {m.id for m in listed} >= {"openai/gpt-image-1", "local"}
    for entry in (m for p in PROVIDERS for m in load_catalog().models_of(p)):
        for alias in entry.aliases:
            assert client.models.retrieve(alias).id == entry.name
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("openai/gpt-image-9")
    assert caught.value.code == "model_not_found" and "openai/gpt-image-2" in caught.value.message


def test_every_model_answers_to_its_bare_and_provider_prefixed_upstream_id(
        catalog_gateway) -> None:
    """``grok-2-image-1212`` (a dated snapshot) as well as ``xai/grok-2-image-1212``: every
    catalog model answers to its upstream id, bare and behind its provider's name, unless a
    configured name or alias claims that id for another model."""
    client = sdk(catalog_gateway)
    catalog = load_catalog()
    configured = {n for p in PROVIDERS for m in catalog.models_of(p) for n in (m.name, *m.aliases)}
    assert client.models.retrieve("grok-2-image-1212").id == "xai/grok-2-image-1212"
    for entry in (m for p in PROVIDERS for m in catalog.models_of(p)):
        for implied in (entry.upstream_model, f"{entry.provider}/{entry.upstream_model}"):
            if implied not in configured:
                served = client.models.retrieve(implied).id
                # Shared by two providers (gpt-image-1 on openai and azure): the first served.
                assert load_model(catalog, served).upstream_model == entry.upstream_model
    assert client.models.retrieve("gpt-image-1").id == "openai/gpt-image-1", "aliases win"
    assert client.models.retrieve("azure/gpt-image-1").id == "azure/gpt-image-1"
    response = httpx.post(f"{catalog_gateway.url}/v1/images/generations", timeout=30,
                          json={"model": "grok-2-image-1212", "prompt": "p"})
    assert response.status_code != 404, response.text


def load_model(catalog, name: str):
    return next(m for m in catalog.models if m.name == name)
