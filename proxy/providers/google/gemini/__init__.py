"""Provider ``gemini``: Gemini native image models on the Gemini API or Vertex AI.

``backend`` (settings, URLs, auth) and ``errors`` are shared with the ``imagen`` provider.
"""

from proxy.providers.google.gemini.adapter import GeminiProvider, GeminiSettings

__all__ = ["GeminiProvider", "GeminiSettings"]
