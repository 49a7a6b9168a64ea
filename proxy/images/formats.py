"""Which image format bytes are in, from their magic number: the one sniffer of the gateway."""

from __future__ import annotations

from typing import Literal

ImageFormat = Literal["png", "jpeg", "webp", "gif"]

MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


def sniff(data: bytes) -> ImageFormat | None:
    """The format of encoded image bytes (PNG, JPEG, WebP or GIF), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None
