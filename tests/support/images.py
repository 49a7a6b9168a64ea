"""Helpers to look inside the images tests get back."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageChops, ImageStat


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
