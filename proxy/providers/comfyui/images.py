"""Image bytes from ComfyUI -> base64 in the format the client asked for.

SaveImage always writes PNG and previews are JPEG (or PNG); bytes already in the requested format
are passed through untouched, anything else is transcoded once. These functions block: callers
run them in a worker thread.
"""

from __future__ import annotations

import base64
import io

from PIL import Image as PILImage

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def sniff(data: bytes) -> str | None:
    """The format of encoded image bytes, from their magic number."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def to_b64(data: bytes, output_format: str, compression: int | None) -> tuple[str, int, int]:
    """``(base64, width, height)`` of ``data`` encoded as ``output_format``."""
    with PILImage.open(io.BytesIO(data)) as image:
        width, height = image.size
        if sniff(data) != output_format:
            data = _encode(image, output_format, compression)
    return base64.b64encode(data).decode("ascii"), width, height


def _encode(image: PILImage.Image, output_format: str, compression: int | None) -> bytes:
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
