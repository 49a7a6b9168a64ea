"""Image hosting for ``response_format: "url"``: store an image, hand the client a URL.

Most providers answer with base64 only; when a client asks for URLs, the gateway ``put``s each
image in an :class:`ImageStore` and returns the URL it gives back:

- :class:`LocalImageStore` keeps files in a directory and serves them itself under signed,
  expiring URLs (``proxy.http.files`` serves them);
- :class:`S3ImageStore` uploads to an S3-compatible bucket and returns presigned GET URLs.

:func:`build_store` makes one from the ``storage:`` settings (:data:`StorageSettings`).
"""

from __future__ import annotations

from pathlib import Path

from proxy.config.storage import (
    LocalStoreSettings,
    S3StoreSettings,
    StorageSettings,
    storage_settings_adapter,
)
from proxy.storage.base import (
    CONTENT_TYPES,
    ImageStore,
    InvalidImageName,
    check_name,
    is_safe_name,
)
from proxy.storage.local import LocalImageStore, StoredFile, load_or_create_secret
from proxy.storage.s3 import S3ImageStore


def build_store(settings: LocalStoreSettings | S3StoreSettings, data_dir: Path) -> ImageStore:
    """The store ``settings`` describe. A local store's directory defaults to
    ``data_dir / "images"``; a relative one is relative to ``data_dir``."""
    if isinstance(settings, LocalStoreSettings):
        directory = Path(data_dir) / (settings.directory or "images")
        secret = settings.secret.get_secret_value() if settings.secret else None
        return LocalImageStore(directory, ttl_seconds=settings.ttl_seconds, secret=secret,
                               public_url=settings.public_url,
                               sweep_seconds=settings.sweep_seconds)
    if isinstance(settings, S3StoreSettings):
        return S3ImageStore(
            settings.bucket,
            prefix=settings.prefix,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            access_key_id=(settings.access_key_id.get_secret_value()
                           if settings.access_key_id else None),
            secret_access_key=(settings.secret_access_key.get_secret_value()
                               if settings.secret_access_key else None),
            addressing_style=settings.addressing_style,
            ttl_seconds=settings.ttl_seconds,
        )
    raise TypeError(f"unknown storage settings {type(settings).__name__}")


__all__ = [
    "CONTENT_TYPES",
    "ImageStore",
    "InvalidImageName",
    "LocalImageStore",
    "LocalStoreSettings",
    "S3ImageStore",
    "S3StoreSettings",
    "StorageSettings",
    "StoredFile",
    "build_store",
    "check_name",
    "is_safe_name",
    "load_or_create_secret",
    "storage_settings_adapter",
]
