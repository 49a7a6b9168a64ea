"""Attach an edit's images to a validated request, held to the model's limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.edits.inputs import InputImage, check_mask
from proxy.errors import invalid_param, unsupported_param
from proxy.params import ImageRequest

if TYPE_CHECKING:
    from proxy.models.served import ServedModel


def attach_images(request: ImageRequest, served: ServedModel, images: list[InputImage],
                  mask: InputImage | None, listed: bool) -> None:
    rules = served.rules
    if not rules.edits:
        raise invalid_param("model", f"Model '{served.name}' cannot edit images.",
                            code="model_cannot_edit")
    if not images:
        raise invalid_param("image", "Missing required parameter: 'image'.",
                            code="missing_required_parameter")
    if len(images) > rules.max_input_images:
        raise invalid_param("image", f"Too many images: model '{served.name}' takes at most "
                            f"{rules.max_input_images}, got {len(images)}.",
                            code="too_many_images")
    request.images = images
    request.images_listed = listed
    if mask is not None:
        if rules.mask:
            check_mask(mask, images[0])
            request.mask = mask
        elif served.drop_unsupported:
            request.dropped.append("mask")
        else:
            raise unsupported_param("mask", served.name)
