"""Fetching client-supplied images safely (``image_url`` inputs of ``/v1/images/edits``).

A URL from a client is an SSRF hole unless every connection the gateway makes for it goes to a
public address: :class:`ImageFetcher` resolves the host itself, vets every address, hands aiohttp
exactly the vetted addresses, checks the connected socket's peer, and re-vets every redirect.
``data:`` URLs and bare base64 go through :func:`decode_inline` and the same image checks.
"""

from proxy.config.fetch import FetchSettings
from proxy.fetching.addresses import (
    AllowList,
    is_metadata_address,
    is_public_address,
    parse_allow_entry,
)
from proxy.fetching.fetcher import ImageFetcher, Resolve, system_resolve
from proxy.fetching.images import FetchedImage
from proxy.fetching.inline import decode_inline

__all__ = [
    "AllowList",
    "FetchSettings",
    "FetchedImage",
    "ImageFetcher",
    "Resolve",
    "decode_inline",
    "is_metadata_address",
    "is_public_address",
    "parse_allow_entry",
    "system_resolve",
]
