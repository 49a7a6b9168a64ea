"""The errors a client sees when its image cannot be used; all name the client's parameter."""

from __future__ import annotations

from proxy.core.errors import GatewayError


def url_invalid(param: str, why: str) -> GatewayError:
    return GatewayError(400, f"The image URL in '{param}' is invalid: {why}.", param=param,
                        code="image_url_invalid")


def url_forbidden(param: str, why: str) -> GatewayError:
    return GatewayError(
        400,
        f"The image URL in '{param}' {why}; the gateway only fetches images from public "
        "addresses.",
        param=param, code="image_url_forbidden",
    )


def url_unreachable(param: str, why: str) -> GatewayError:
    return GatewayError(400, f"The image URL in '{param}' could not be fetched: {why}.",
                        param=param, code="image_url_unreachable")


def invalid_image(param: str, why: str) -> GatewayError:
    return GatewayError(400, f"The image in '{param}' is not usable: {why}.", param=param,
                        code="invalid_image")
