"""What the gateway takes as an input image: formats, sizes, counts, and the one error for an
image that is too large."""

from __future__ import annotations

from proxy.core.errors import GatewayError, invalid_param
from proxy.images.formats import MIME_TYPES, ImageFormat, sniff

# OpenAI's limit per image for GPT image models; also the default here.
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGES = 16
# The formats an input image may be in (OpenAI's), however it arrives (a file part, base64, a
# data URL, a URL): a GIF is recognised, and refused, the same way everywhere.
ACCEPTED: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")

_MB = 1024 * 1024


def too_large(param: str, max_bytes: int = MAX_IMAGE_BYTES) -> GatewayError:
    """413 for an input image past ``max_bytes`` (uploaded, inline or fetched)."""
    limit = f"{max_bytes // _MB} MB" if max_bytes % _MB == 0 else f"{max_bytes} bytes"
    return GatewayError(413, f"Invalid file '{param}': the image is larger than the {limit} "
                        "allowed.", param=param, code="image_too_large")


def accepted_format(data: bytes, param: str) -> ImageFormat:
    """The format of an input image's bytes (sniffed, never taken from a name or a declared
    type); the one 400 for every image in another format, wherever it came from."""
    kind = sniff(data)
    if kind not in ACCEPTED:
        listed = ", ".join(f"'{MIME_TYPES[f]}'" for f in ACCEPTED[:-1])
        found = f" (it is a {kind.upper()})" if kind else ""
        raise invalid_param(
            param, f"Invalid file '{param}': not a supported image{found}. Supported formats "
                   f"are {listed} and '{MIME_TYPES[ACCEPTED[-1]]}'.", code="invalid_image")
    return kind
