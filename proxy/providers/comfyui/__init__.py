"""Provider ``comfyui``: workflows on a ComfyUI server (see ``docs/comfyui.md``)."""

from proxy.providers.comfyui.adapter import ComfyUIProvider
from proxy.providers.comfyui.settings import ComfyUISettings

__all__ = ["ComfyUIProvider", "ComfyUISettings"]
