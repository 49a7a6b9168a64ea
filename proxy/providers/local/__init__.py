"""The built-in renderer: ``painter`` draws, ``adapter`` turns drawing into gateway events."""

from proxy.providers.local.adapter import LocalProvider

__all__ = ["LocalProvider"]
