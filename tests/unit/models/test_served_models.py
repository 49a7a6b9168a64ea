"""The table of served models: a configured provider serves its whole catalog, aliases and
settings included."""

from __future__ import annotations

from proxy.config import load_config_text


def test_a_configured_provider_serves_its_whole_catalog() -> None:
    from proxy.models.catalog import load_catalog
    from proxy.routing import build_models
    from proxy.upstream.client import UpstreamClient

    config = load_config_text("""
providers:
  openai: {api_key: sk-x, base_url: "http://127.0.0.1:9/v1"}
models:
  - {name: openai/gpt-image-1, provider: openai, timeout: {total: 60}}
  - {name: mine, provider: openai, upstream_model: gpt-image-1-2025-04-15}
""")
    table = build_models(config, UpstreamClient())
    names = [m.name for m in table.models]
    catalog = [m.name for m in load_catalog().models_of("openai")]
    assert names[:2] == ["openai/gpt-image-1", "mine"]
    assert sorted(names[2:]) == sorted(n for n in catalog if n != "openai/gpt-image-1")
    assert table.resolve("gpt-image-1").name == "openai/gpt-image-1", "catalog alias kept"
    assert table.resolve("dall-e-3").config.timeout.total == 900
    assert table.resolve("openai/gpt-image-1").config.timeout.total == 60
    mine = table.resolve("mine")
    assert mine.rules.sizes == table.resolve("gpt-image-1").rules.sizes, "dated snapshot"
    assert mine.provider.settings.base_url == "http://127.0.0.1:9/v1", "inherited settings"
