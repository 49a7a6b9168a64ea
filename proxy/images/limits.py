"""What the gateway takes as an input image: formats, sizes, counts, and the one error for an
image that is too large."""

from __future__ import annotations

from proxy.core.errors import GatewayError

# OpenAI's limit per image for GPT image models; also the default here.
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGES = 16
# The formats an edit takes (OpenAI's): a GIF is recognised, and refused.
ACCEPTED = ("png", "jpeg", "webp")

_MB = 1024 * 1024


def too_large(param: str, max_bytes: int = MAX_IMAGE_BYTES) -> GatewayError:
    """413 for an input image past ``max_bytes`` (uploaded, inline or fetched)."""
    limit = f"{max_bytes // _MB} MB" if max_bytes % _MB == 0 else f"{max_bytes} bytes"
    return GatewayError(413, f"Invalid file '{param}': the image is larger than the {limit} "
                        "allowed.", param=param, code="image_too_large")
