"""Encoded images: sniff the format, read the size, transcode to what the client asked for.

Upstreams answer in whatever format they like (ComfyUI writes PNG, Gemini often JPEG); the client
asked for one ``output_format``. Bytes already in that format pass through untouched, anything
else is transcoded once. These functions block on CPU: callers run them in a worker thread,
except :func:`b64_dimensions`, which only decodes a header.
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image as PILImage

from proxy.images.formats import sniff

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def to_b64(data: bytes, output_format: str, compression: int | None) -> tuple[str, int, int]:
    """``(base64, width, height)`` of ``data`` encoded as ``output_format``."""
    with PILImage.open(io.BytesIO(data)) as image:
        width, height = image.size
        if sniff(data) != output_format:
            data = encode(image, output_format, compression)
    return base64.b64encode(data).decode("ascii"), width, height


def b64_as(b64: str, output_format: str, compression: int | None) -> tuple[str, int, int]:
    """Like :func:`to_b64` for base64 input; the string itself is returned when no transcoding
    is needed (no decode/re-encode of megabytes for nothing)."""
    dimensions = b64_dimensions(b64)
    if dimensions is not None and dimensions[0] == output_format:
        return b64, dimensions[1], dimensions[2]
    return to_b64(base64.b64decode(b64), output_format, compression)


def b64_dimensions(b64: str) -> tuple[str, int, int] | None:
    """``(format, width, height)`` read from the header only: the first 64 KiB of the base64
    (PNG's IHDR comes first; a JPEG's SOF is nearly always within that)."""
    head = base64.b64decode(b64[: 65536 // 3 * 4] + "=" * (-min(len(b64), 87380) % 4))
    try:
        with PILImage.open(io.BytesIO(head)) as image:
            fmt = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}.get(image.format or "")
            return (fmt, *image.size) if fmt else None
    except (OSError, ValueError):
        return None


def encode(image: PILImage.Image, output_format: str, compression: int | None) -> bytes:
    """Encode a decoded image; alpha is kept where the format has it, flattened on white for
    JPEG."""
    has_alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
    if output_format == "jpeg" or not has_alpha:
        if has_alpha:
            rgba = image.convert("RGBA")
            flat = PILImage.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        else:
            image = image.convert("RGB")
    elif image.mode != "RGBA":
        image = image.convert("RGBA")
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=6)
    else:
        quality = 90 if compression is None else compression
        image.save(buffer, _PIL_FORMATS[output_format], quality=quality)
    return buffer.getvalue()


def b64_complete(b64: str | bytes) -> bool:
    """Whether base64 image data is whole, checked in constant time: a valid length, and the
    end marker of its format where the format has one (PNG's IEND chunk, JPEG's EOI marker,
    WebP's RIFF length). A truncated upstream answer fails this instead of reaching a client
    as a broken picture."""
    return b64_ends_complete(b64[:16], b64[-16:], len(b64))


def b64_ends_complete(head: str | bytes, tail: str | bytes, length: int) -> bool:
    """:func:`b64_complete` of base64 known by its first and last 16 characters and its
    length (an image passed on in pieces, never held whole)."""
    if length < 16 or length % 4 or len(head) < 16 or len(tail) < 16:
        return False
    try:
        first = base64.b64decode(head[:16], validate=True)
        decoded_tail = base64.b64decode(tail[-16:], validate=True)
    except (binascii.Error, ValueError):
        return False
    kind = sniff(first)
    if kind == "png":
        return decoded_tail.endswith(b"IEND\xaeB`\x82")
    if kind == "jpeg":
        return decoded_tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if kind == "webp":
        tail2 = tail[-2:]
        pads = tail2.count(b"=") if isinstance(tail2, bytes) else tail2.count("=")
        size = length // 4 * 3 - pads
        return int.from_bytes(first[4:8], "little") + 8 == size
    return True  # a format without an end marker: the length check is all there is
