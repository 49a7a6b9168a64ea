"""Settings of the image stores, for a ``storage:`` section of the configuration.

``storage: {kind: local}`` keeps images on this machine and serves them from the gateway under
signed, expiring URLs; ``storage: {kind: s3, bucket: ...}`` uploads them to an S3-compatible bucket
and hands out presigned GET URLs. Secrets are :class:`~pydantic.SecretStr`: they never show in a
``repr`` or a validation error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)

# SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class _Strict(BaseModel):
    # hide_input_in_errors: a validation error must never echo a secret or a key.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _check_public_url(url: str | None) -> str | None:
    if url is None:
        return None
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise ValueError("public_url must be an http(s) origin (optionally with a path prefix), "
                         "e.g. https://images.example.com")
    return url


class LocalStoreSettings(_Strict):
    """Images in a directory, served by the gateway at ``/v1/images/files/{name}``."""

    kind: Literal["local"] = "local"
    # Where the files go; default ``<data_dir>/images``. A relative path is relative to data_dir.
    directory: Path | None = None
    # How long a URL (and the file behind it) lives, in seconds.
    ttl_seconds: int = Field(3600, ge=1, le=MAX_PRESIGN_SECONDS)
    # The HMAC key of the URLs. Absent: a random one is made once and kept in the directory
    # (file ``.url-secret``, mode 0600), so URLs stay valid across restarts. Give the same secret
    # to every instance that shares the directory.
    secret: SecretStr | None = Field(None, min_length=32)
    # The origin clients reach the gateway at (e.g. ``https://img.example.com``), when it runs
    # behind a reverse proxy; default: the origin of each request.
    public_url: str | None = None
    # Seconds between sweeps that delete expired files.
    sweep_seconds: float = Field(300.0, gt=0)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        return _check_public_url(url)


class S3StoreSettings(_Strict):
    """Images uploaded to an S3(-compatible) bucket, handed out as presigned GET URLs.

    The objects themselves are not deleted by the gateway: give the bucket a lifecycle rule that
    expires objects under ``prefix`` (see docs/image-hosting.md).
    """

    kind: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    # Key prefix of the objects, e.g. ``images/``.
    prefix: str = Field("", max_length=256)
    # An S3-compatible server (MinIO, R2, Ceph, ...); default: AWS S3 of ``region``.
    endpoint_url: str | None = None
    region: str | None = None
    # Both or neither; neither means botocore's default credential chain (environment, shared
    # config, instance or task role ...).
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # "path" for servers that do not route bucket.host names (most self-hosted ones).
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # How long a presigned URL stays valid (SigV4 allows at most seven days).
    ttl_seconds: int = Field(3600, ge=1, le=MAX_PRESIGN_SECONDS)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        prefix = prefix.lstrip("/")
        if prefix and any(p in ("", ".", "..") for p in prefix.rstrip("/").split("/")):
            raise ValueError("prefix must not contain empty, '.' or '..' segments")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return prefix

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("endpoint_url must start with http:// or https://")
        return url

    @model_validator(mode="after")
    def _key_pair(self) -> S3StoreSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        return self


StorageSettings = Annotated[LocalStoreSettings | S3StoreSettings, Field(discriminator="kind")]
"""The ``storage:`` section: ``kind: local`` or ``kind: s3``."""

storage_settings_adapter: TypeAdapter[LocalStoreSettings | S3StoreSettings] = TypeAdapter(
    StorageSettings, config=ConfigDict(hide_input_in_errors=True))
