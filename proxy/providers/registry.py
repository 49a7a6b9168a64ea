"""Provider names in config -> adapter classes."""

from __future__ import annotations

from proxy.providers.base import Provider, ProviderSettings
from proxy.providers.comfyui import ComfyUIProvider
from proxy.providers.local import LocalProvider
from proxy.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.name: cls for cls in (LocalProvider, OpenAIProvider, ComfyUIProvider)
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)


def provider_class(name: str) -> type[Provider] | None:
    return PROVIDERS.get(name)


def settings_model(name: str) -> type[ProviderSettings] | None:
    cls = PROVIDERS.get(name)
    return cls.settings_class if cls else None
