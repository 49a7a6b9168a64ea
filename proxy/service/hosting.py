"""``response_format: "url"``: store the job's images and answer with their links."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from proxy.core.errors import GatewayError
from proxy.images.formats import sniff
from proxy.storage import ImageStore

log = logging.getLogger("proxy.hosting")
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSION = {"png": "png", "jpeg": "jpg", "webp": "webp"}


async def host_images(body: dict[str, Any], job_id: str, store: ImageStore,
                      base_url: str) -> None:
    """Replace each ``b64_json`` in ``body["data"]`` by the ``url`` of the stored image."""

    async def host(index: int, item: dict[str, Any]) -> None:
        data = base64.b64decode(item["b64_json"])
        kind = sniff(data)
        if kind not in _EXTENSION:  # generated images are PNG, JPEG or WebP
            kind = "png"
        try:
            url = await store.put(data, content_type=_MIME[kind], base_url=base_url,
                                  name=f"{job_id}-{index}.{_EXTENSION[kind]}")
        except Exception:
            log.exception("job %s: storing image %d failed", job_id, index)
            raise GatewayError(500, "The images were made but could not be stored for "
                               "response_format 'url'; ask for 'b64_json' to get them inline.",
                               type="server_error", code="image_storage_failed") from None
        del item["b64_json"]
        item["url"] = url

    await asyncio.gather(*(host(i, item) for i, item in enumerate(body["data"])
                           if item.get("b64_json")))
