"""The image request bound to one model: what an adapter reads."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from proxy.images.inputs import InputImage
from proxy.request.fields import OPENAI_OPTIONAL, ImageParams


class ImageRequest(ImageParams):
    """A validated request bound to a model; only what the model accepts (and the client sent)
    is set. The request's fields are :class:`ImageParams`'s, with the defaults a bound request
    has; the rest is binding's own. Built by :func:`proxy.request.bind.apply_rules` from values
    :func:`parse_params` has validated."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    n: int = 1
    stream: bool = False
    partial_images: int = 0
    # Sent to the provider with the request (credential headers are refused).
    extra_headers: dict[str, str] = Field(default_factory=dict)
    # Edits: the input images (the first is the one the mask applies to) and the mask.
    images: list[InputImage] = Field(default_factory=list)
    # The client sent a list (``image[]`` parts or a JSON array), even of one image.
    images_listed: bool = False
    # The client asked for URLs: images are stored and the response carries their links.
    host_images: bool = False
    mask: InputImage | None = None
    # Parameters the gateway does not know, forwarded as they are (passthrough models only).
    extra: dict[str, Any] = Field(default_factory=dict)
    # Parameters dropped because the model cannot use them (reported in ``x-dropped-params``).
    dropped: list[str] = Field(default_factory=list)
    # One spelling turned into another (a size into a ratio and tier, a ratio into a size), as
    # ``x-adjusted-params`` entries (:class:`proxy.models.sizing.Adjustment`).
    adjusted: list[str] = Field(default_factory=list)

    def upstream_params(self) -> dict[str, Any]:
        """The OpenAI-named parameters that are set, for adapters that speak OpenAI's dialect."""
        out: dict[str, Any] = {}
        for name in ("n", *OPENAI_OPTIONAL):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return out
