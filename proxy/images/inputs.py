"""Input images for edits: bytes whose type is sniffed from their content, never trusted from a
filename or a Content-Type (the SDK sends raw bytes as ``application/octet-stream``)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from proxy.core.errors import invalid_param
from proxy.images.formats import MIME_TYPES
from proxy.images.limits import MAX_IMAGE_BYTES, accepted_format, too_large


@dataclass(frozen=True, slots=True)
class InputImage:
    data: bytes
    format: str
    width: int
    height: int
    has_alpha: bool
    filename: str

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def decoded(self) -> PILImage.Image:
        """The decoded image (blocking: call from a worker thread). Only the header was
        checked on the way in; pixel data that does not decode is the client's 400."""
        try:
            image = PILImage.open(io.BytesIO(self.data))
            image.load()
        except (OSError, ValueError, SyntaxError):
            raise invalid_param("image", "Invalid file 'image': its pixel data is corrupt or "
                                "truncated.", code="invalid_image") from None
        return image


def load_image(data: bytes, *, param: str, filename: str = "image",
               max_bytes: int = MAX_IMAGE_BYTES) -> InputImage:
    """Check that ``data`` is an image we accept; read its size from the header only."""
    if len(data) > max_bytes:
        raise too_large(param, max_bytes)
    kind = accepted_format(data, param)
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
            alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    except PILImage.DecompressionBombError:
        raise invalid_param(param, f"Invalid file '{param}': it claims more pixels than any "
                            "model takes.", code="invalid_image") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise invalid_param(param, f"Invalid file '{param}': the image data is corrupt.",
                            code="invalid_image") from None
    extension = {"jpeg": "jpg"}.get(kind, kind)
    name = filename if filename not in ("", "upload", "image") else f"image.{extension}"
    return InputImage(data, kind, width, height, alpha, name)


def check_mask(mask: InputImage, first: InputImage) -> None:
    """OpenAI's rule: a mask is a PNG with an alpha channel, the size of the first image."""
    if (mask.width, mask.height) != (first.width, first.height):
        raise invalid_param(
            "mask", f"Invalid 'mask': its size {mask.width}x{mask.height} differs from the "
                    f"image's {first.width}x{first.height}; they must be the same.",
            code="mask_size_mismatch")
    if mask.format != "png" or not mask.has_alpha:
        raise invalid_param("mask", "Invalid 'mask': it must be a PNG with an alpha channel "
                            "(fully transparent pixels mark the area to edit).",
                            code="invalid_mask")
