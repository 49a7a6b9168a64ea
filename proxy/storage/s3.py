"""Images uploaded to an S3-compatible bucket and handed out as presigned GET URLs.

Many gateway hosts can share one bucket. The gateway never deletes objects: a bucket lifecycle
rule expiring everything under ``prefix`` after a day does (docs/image-hosting.md gives one).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from proxy.storage.base import stored_name

log = logging.getLogger("proxy.storage.s3")


class S3ImageStore:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "auto",
        ttl_seconds: int = 3600,
    ) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.addressing_style = addressing_style
        self.ttl_seconds = int(ttl_seconds)
        self._credentials = (access_key_id, secret_access_key)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    def __repr__(self) -> str:  # never the credentials
        return (f"S3ImageStore(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"endpoint_url={self.endpoint_url!r})")

    async def start(self) -> None:
        if self._client is not None:
            return
        # Imported here: botocore is large, and only gateways that use S3 need it loaded.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": self.addressing_style},
            # Many S3-compatible servers reject the CRC checksums botocore now sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 3},
        )
        access_key_id, secret_access_key = self._credentials
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(get_session().create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        ))
        self._stack = stack

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def put(self, data: bytes, *, content_type: str, name: str, base_url: str) -> str:
        if self._client is None:
            raise RuntimeError("S3ImageStore.start() has not been awaited")
        if not data:
            raise ValueError("refusing to store an empty image")
        key = self.prefix + stored_name(name, content_type)
        await self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=f"private, max-age={self.ttl_seconds}",
        )
        log.debug("uploaded image %s (%d bytes, %s)", key, len(data), content_type)
        return await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.ttl_seconds,
        )
