"""Images for tests: building the ones they send, looking inside the ones they get back."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageChops, ImageStat


def encoded(width: int, height: int, colour: tuple[int, ...] = (30, 120, 200),
            kind: str = "PNG", mode: str = "RGB") -> bytes:
    """A flat ``colour`` image of that size, encoded as ``kind`` (PNG, JPEG, WEBP, ...)."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, kind)
    return buffer.getvalue()


def half_transparent(width: int, height: int,
                     colour: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A PNG mask: opaque (keep) on the left half, fully transparent (OpenAI: the area to edit)
    on the right half."""
    image = Image.new("RGBA", (width, height), (*colour, 255))
    image.paste((*colour, 0), (width // 2, 0, width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def named(data: bytes, name: str) -> io.BytesIO:
    """``data`` as a file with a name: the SDK sends the name and a content type guessed from
    it."""
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def decode(b64: str) -> Image.Image:
    return decode_bytes(base64.b64decode(b64, validate=True))


def decode_bytes(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference, 0..255."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3
