"""Provider ``azure``: Azure OpenAI's deployment-based Images API.

The wire format is OpenAI's (the same ``ImagesResponse`` and ``image_generation.*`` SSE events), so
this is the ``openai`` adapter with Azure's URL, auth and refusals: the deployment in the path
decides the model, ``api-version`` is a query parameter, the key goes in ``api-key`` (never as a
bearer token; ``Authorization: Bearer`` carries only an Entra ID token), and the content filter
answers in several shapes, some of them with HTTP 200. See providers.md §A.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import Field, SecretStr

from proxy.core.errors import GatewayError, upstream_error
from proxy.core.events import Event
from proxy.providers.base import Call, ModelSpec, ProviderContext, ProviderSettings
from proxy.providers.openai.adapter import OpenAIProvider, endpoint
from proxy.providers.openai.errors import error_envelope, error_from_upstream

# The content filter's codes, compared without case or underscores (``contentFilter`` in the docs'
# example, ``content_filter``/``content_policy_violation`` in the wild, ``moderation_blocked``
# from gpt-image), and the inner code of the documented ``dalleErrorResponse``.
_FILTER_CODES = frozenset({"contentfilter", "contentpolicyviolation", "moderationblocked"})
_FILTER_INNER = "responsibleaipolicyviolation"


class AzureSettings(ProviderSettings):
    # The resource, e.g. https://{resource}.openai.azure.com (or *.cognitiveservices.azure.com,
    # or any base that serves /openai/deployments/...).
    endpoint: str = Field(pattern=r"^https?://")
    # Exactly one of the two: a resource key (sent as ``api-key``) or an Entra ID access token
    # (sent as ``Authorization: Bearer``).
    api_key: SecretStr | None = None
    entra_token: SecretStr | None = None
    # gpt-image needs 2025-04-01-preview; dall-e-3 also answers on 2024-02-01 / 2024-10-21.
    api_version: str = Field("2025-04-01-preview", min_length=1)
    # The deployment to call. Default: ``deployments[upstream model]``, else the upstream
    # model's own name (Azure's portal suggests naming deployments after their model).
    deployment: str | None = Field(None, min_length=1)
    # Upstream model -> deployment name; handy once in the ``providers:`` section.
    deployments: dict[str, str] = Field(default_factory=dict)
    # Sent with every upstream request.
    headers: dict[str, str] = Field(default_factory=dict)


class AzureProvider(OpenAIProvider):
    name = "azure"
    settings_class = AzureSettings
    settings: AzureSettings

    @classmethod
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        assert isinstance(settings, AzureSettings)
        if settings.api_key is not None and settings.entra_token is not None:
            raise ValueError("entra_token: give either api_key or entra_token, not both (a "
                             "model entry drops an inherited key with 'api_key: null')")
        if settings.api_key is None and settings.entra_token is None:
            raise ValueError("api_key: required (or entra_token, for Entra ID auth)")

    def __init__(self, model: ModelSpec, settings: ProviderSettings,
                 context: ProviderContext) -> None:
        super().__init__(model, settings, context)
        upstream = model.upstream_model
        self.deployment = (self.settings.deployment or self.settings.deployments.get(upstream)
                           or upstream)
        endpoint = self.settings.endpoint.rstrip("/").removesuffix("/openai")
        query = urlencode({"api-version": self.settings.api_version})
        self.base = f"{endpoint}/openai/deployments/{quote(self.deployment, safe='')}"
        self.query = query

    def _url(self, call: Call) -> str:
        return f"{self.base}/{endpoint(call)}?{self.query}"

    def _headers(self) -> dict[str, str]:
        headers = dict(self.settings.headers)
        if self.settings.api_key is not None:
            headers["api-key"] = self.settings.api_key.get_secret_value()
        elif self.settings.entra_token is not None:
            headers["authorization"] = f"Bearer {self.settings.entra_token.get_secret_value()}"
        return headers

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str], *,
               mid_stream: bool = False) -> GatewayError:
        error, message = error_envelope(raw)
        known = self._refusal(status, error, message)
        return known or error_from_upstream(status, raw, headers, mid_stream=mid_stream)

    async def _body_events(self, call: Call, body: Any,
                           lifted: dict[str, bytes]) -> AsyncGenerator[Event, None]:
        # A refusal can come as HTTP 200: ``{"created": …, "error": {"code": "contentFilter"}}``.
        if isinstance(body, dict) and not isinstance(body.get("data"), list):
            error = body.get("error")
            if isinstance(error, dict):
                message = str(error.get("message") or "no message")
                raise self._refusal(200, error, message) or upstream_error(
                    f"Azure answered without images: {message}")
        # DALL-E's ``prompt_filter_results``/``content_filter_results`` annotations are dropped.
        async for event in super()._body_events(call, body, lifted):
            yield event

    def _refusal(self, status: int, error: dict[str, Any], message: str) -> GatewayError | None:
        """Azure's own refusals: the content filter, and a deployment that does not exist."""
        code = _folded(error.get("code"))
        inner = error.get("inner_error") or error.get("innererror")
        inner_code = _folded(inner.get("code")) if isinstance(inner, dict) else ""
        if code in _FILTER_CODES or inner_code == _FILTER_INNER:
            param = error.get("param") if isinstance(error.get("param"), str) else None
            return GatewayError(400, message, param=param, code="content_policy_violation")
        if code == "deploymentnotfound" or status == 404:
            return GatewayError(
                404, f"The Azure deployment '{self.deployment}' (model '{self.model.name}') "
                     f"was not found: {message}", param="model", code="model_not_found")
        return None


def _folded(value: Any) -> str:
    return value.replace("_", "").lower() if isinstance(value, str) else ""
