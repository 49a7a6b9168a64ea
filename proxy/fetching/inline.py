"""Images given inline: ``data:image/png;base64,...`` URLs and bare base64."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_to_bytes

from proxy.fetching.errors import invalid_image
from proxy.fetching.images import (
    FetchedImage,
    acceptable_media_type,
)
from proxy.images.formats import MIME_TYPES
from proxy.images.limits import accepted_format, too_large

_WHITESPACE = re.compile(rb"\s+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def decode_inline(value: str, *, param: str, max_bytes: int) -> FetchedImage:
    """Decode a ``data:`` URL (base64 only) or bare base64 (standard or URL-safe alphabet,
    padding optional, whitespace ignored) and check that it is in a format the gateway takes
    (:func:`proxy.images.limits.accepted_format`, the same rule as for every input image)."""
    if not isinstance(value, str):
        raise invalid_image(param, "expected a string")
    payload = value
    if value[:5].lower() == "data:":
        header, comma, payload = value[5:].partition(",")
        if not comma:
            raise invalid_image(param, "the data URL has no ',' before its data")
        media_type, *attributes = (part.strip().lower() for part in header.split(";"))
        if "base64" not in attributes:
            raise invalid_image(param, "data URLs must be base64-encoded (';base64,')")
        if media_type and not acceptable_media_type(media_type):
            raise invalid_image(param, f"the data URL's type {media_type[:100]!r} is not an image")
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        raise invalid_image(param, "it is not valid base64") from None
    if b"%" in raw:  # percent-encoded inside a data URL
        raw = unquote_to_bytes(raw)
    raw = _WHITESPACE.sub(b"", raw)
    if not raw:
        raise invalid_image(param, "it is empty")
    # Refuse before decoding: 4 characters of base64 carry 3 bytes.
    if (len(raw.rstrip(b"=")) * 3) // 4 > max_bytes:
        raise too_large(param, max_bytes)
    if b"-" in raw or b"_" in raw:
        raw = raw.translate(bytes.maketrans(b"-_", b"+/"))
    raw += b"=" * (-len(raw) % 4)
    if not _BASE64.fullmatch(raw):
        raise invalid_image(param, "it is not valid base64")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_image(param, "it is not valid base64") from None
    if len(data) > max_bytes:
        raise too_large(param, max_bytes)
    fmt = accepted_format(data, param)
    return FetchedImage(data=data, content_type=MIME_TYPES[fmt], format=fmt)
