"""Provider names in configuration -> adapter classes: the one list of providers."""

from __future__ import annotations

from proxy.providers.azure.adapter import AzureProvider
from proxy.providers.base import Provider
from proxy.providers.comfyui.adapter import ComfyUIProvider
from proxy.providers.google.gemini.adapter import GeminiProvider
from proxy.providers.google.imagen.adapter import ImagenProvider
from proxy.providers.local.adapter import LocalProvider
from proxy.providers.openai.adapter import OpenAIProvider
from proxy.providers.xai.adapter import XAIProvider

PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (
    LocalProvider, OpenAIProvider, AzureProvider, XAIProvider, GeminiProvider, ImagenProvider,
    ComfyUIProvider,
)}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)


def provider_class(name: str) -> type[Provider] | None:
    return PROVIDERS.get(name)
