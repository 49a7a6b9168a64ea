"""Where a Google model lives and how to sign in there: the Gemini API or Vertex AI.

Shared by the ``gemini`` (``:generateContent``) and ``imagen`` (``:predict``) providers. The
settings pick the backend: ``api_key`` means the Gemini API (``x-goog-api-key``), ``project``
means Vertex AI (an OAuth bearer token, see :mod:`proxy.providers.google.auth`).
"""

from __future__ import annotations

import binascii
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import orjson
from pydantic import Field, SecretStr, model_validator

from proxy.core.errors import GatewayError, upstream_error
from proxy.images.codec import b64_as
from proxy.providers.base import Call, ModelSpec, Provider, ProviderContext, ProviderSettings
from proxy.providers.google.auth import (
    GoogleCredentials,
    TokenSource,
    check_credentials_file,
    token_source,
)
from proxy.providers.google.errors import google_error

GEMINI_API = "https://generativelanguage.googleapis.com"


class GoogleSettings(ProviderSettings):
    # Gemini API (Google AI Studio key).
    api_key: SecretStr | None = None
    # Vertex AI: the project, its location and credentials (none given: ADC).
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    access_token: SecretStr | None = None
    # Replaces scheme and host (a proxy, a test server); the API version path stays.
    base_url: str | None = Field(None, pattern=r"^https?://")
    # ``v1beta`` on the Gemini API, ``v1`` on Vertex AI unless set.
    api_version: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    # Sent with every upstream request.
    headers: dict[str, str] = Field(default_factory=dict)

    # Settings that only make sense on Vertex AI (subclasses add theirs).
    vertex_only: ClassVar[tuple[str, ...]] = ("location", "credentials_file", "access_token")

    @model_validator(mode="after")
    def _one_backend(self) -> GoogleSettings:
        if self.api_key is not None and self.project is not None:
            raise ValueError("give api_key (Gemini API) or project (Vertex AI), not both")
        if self.api_key is None and self.project is None:
            raise ValueError("set api_key for the Gemini API, or project (with "
                             "credentials_file, access_token or application default "
                             "credentials) for Vertex AI")
        if self.credentials_file is not None and self.access_token is not None:
            raise ValueError("give credentials_file or access_token, not both")
        if self.api_key is not None:
            for name in self.vertex_only:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is a Vertex AI setting: it needs project instead "
                                     "of api_key")
        return self

    @property
    def vertex(self) -> bool:
        return self.project is not None


def check_settings(settings: GoogleSettings, config_dir: Path) -> None:
    if settings.credentials_file is not None:
        check_credentials_file(settings.credentials_file, config_dir)


class GoogleBackend:
    """URLs and auth headers for one model's settings."""

    def __init__(self, settings: GoogleSettings, context: ProviderContext,
                 default_location: str) -> None:
        self.settings = settings
        self.vertex = settings.vertex
        self.location = settings.location or default_location
        self.tokens: TokenSource | None = None
        if self.vertex:
            token = settings.access_token.get_secret_value() if settings.access_token else None
            self.tokens = token_source(context.http, access_token=token,
                                       credentials_file=settings.credentials_file,
                                       config_dir=context.config_dir)

    def url(self, model: str, method: str) -> str:
        """``method`` is ``generateContent`` or ``predict``."""
        settings = self.settings
        model = quote(model, safe="")
        if not self.vertex:
            root = (settings.base_url or GEMINI_API).rstrip("/")
            return f"{root}/{settings.api_version or 'v1beta'}/models/{model}:{method}"
        location = self.location
        if settings.base_url:
            root = settings.base_url.rstrip("/")
        elif location == "global":
            root = "https://aiplatform.googleapis.com"
        else:
            root = f"https://{location}-aiplatform.googleapis.com"
        project = quote(settings.project or "", safe="")
        return (f"{root}/{settings.api_version or 'v1'}/projects/{project}/locations/"
                f"{quote(location, safe='')}/publishers/google/models/{model}:{method}")

    def close(self) -> None:
        if isinstance(self.tokens, GoogleCredentials):
            self.tokens.close()  # shared, but a later refresh would open a new session

    async def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.settings.headers}
        if self.tokens is not None:
            headers.update(await self.tokens.headers())
        elif self.settings.api_key is not None:
            headers["x-goog-api-key"] = self.settings.api_key.get_secret_value()
        return headers


def refuse_edits(kind: str, model: str) -> None:
    """Edits need input images the request does not carry yet: never answer an edit with a
    freshly generated picture."""
    if kind != "generation":
        raise GatewayError(400, f"Model '{model}' cannot edit images through this gateway yet.",
                           code="unsupported_operation")


class GoogleProvider(Provider):
    """What the Gemini and Imagen adapters share: settings, credentials, the backend."""

    default_location: ClassVar[str]
    settings: GoogleSettings

    def __init__(self, model: ModelSpec, settings: ProviderSettings,
                 context: ProviderContext) -> None:
        super().__init__(model, settings, context)
        self.backend = GoogleBackend(self.settings, context,
                                     default_location=self.default_location)

    @classmethod
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        assert isinstance(settings, GoogleSettings)
        check_settings(settings, config_dir)

    async def aclose(self) -> None:
        self.backend.close()

    async def post(self, call: Call, method: str, body: bytes) -> Any:
        """POST ``body`` to the model's ``method`` (``generateContent``, ``predict``) and return
        the decoded JSON answer; Google's errors as ``GatewayError``."""
        url = self.backend.url(self.model.upstream_model, method)
        headers = {**call.request.extra_headers, **await self.backend.headers()}
        async with self.http.request("POST", url, timeout=self.model.timeout,
                                     headers=headers, body=body) as response:
            raw = await response.read()
            if response.status != 200:
                raise google_error(response.status, raw, response.headers)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise upstream_error("Google sent a body that is not JSON.",
                                 code="upstream_invalid_response") from None


def encoded(b64: str, output_format: str, compression: int | None) -> tuple[str, int, int]:
    """``b64_as`` with an upstream's broken image data reported as the upstream's fault."""
    try:
        return b64_as(b64, output_format, compression)
    except (OSError, ValueError, binascii.Error, SyntaxError) as exc:
        raise upstream_error(f"Google sent image data that is not an image ({exc}).",
                             code="upstream_invalid_response") from None
