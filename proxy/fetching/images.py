"""What a fetched or decoded image is, and which declared types an image may come with."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.images.formats import ImageFormat

# Declared types accepted besides image/*: S3 and friends label untyped objects with these.
OCTET_STREAM_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


def acceptable_media_type(media_type: str) -> bool:
    """A declared type an image may come with (the bytes are checked separately)."""
    media_type = media_type.strip().lower()
    return media_type.startswith("image/") or media_type in OCTET_STREAM_TYPES


@dataclass(frozen=True)
class FetchedImage:
    data: bytes = field(repr=False)
    # The MIME type of the format found in the bytes (not the type the server declared).
    content_type: str
    format: ImageFormat
    # Where the image came from after redirects; None for data URLs and bare base64.
    # It may carry signed query strings: log it with ``safe_url``, never as is.
    url: str | None = None

    def __repr__(self) -> str:
        return f"FetchedImage({self.format}, {len(self.data)} bytes)"
