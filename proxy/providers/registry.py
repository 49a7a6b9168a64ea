"""Provider names in config -> adapter classes, imported when first asked for."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from proxy.providers.base import Provider, ProviderSettings

PROVIDERS: dict[str, str] = {
    "local": "proxy.providers.local.adapter:LocalProvider",
    "openai": "proxy.providers.openai.adapter:OpenAIProvider",
    "azure": "proxy.providers.azure.adapter:AzureProvider",
    "xai": "proxy.providers.xai.adapter:XAIProvider",
    "gemini": "proxy.providers.google.gemini.adapter:GeminiProvider",
    "imagen": "proxy.providers.google.imagen.adapter:ImagenProvider",
    "comfyui": "proxy.providers.comfyui.adapter:ComfyUIProvider",
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)


@cache
def provider_class(name: str) -> type[Provider] | None:
    target = PROVIDERS.get(name)
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    cls = getattr(import_module(module), attribute)
    assert issubclass(cls, Provider) and cls.name == name, target
    return cls


def settings_model(name: str) -> type[ProviderSettings] | None:
    cls = provider_class(name)
    return cls.settings_class if cls else None
