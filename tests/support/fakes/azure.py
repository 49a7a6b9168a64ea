"""A fake Azure OpenAI resource: the deployment-based Images API (``providers.md`` §A).

``POST /openai/deployments/{deployment}/images/generations?api-version=…`` with ``api-key`` (or an
Entra ID ``Authorization: Bearer`` token), and ``…/images/edits`` (multipart, gpt-image deployments
only: "DALL-E models don't support the Image Edit API"). The images, the SSE stream, the edit
multipart's checks (file parts ``image``/``image[]``/``mask`` with an image mimetype,
``application/octet-stream`` refused) and the misbehaviour on demand (``mode``, ``status``…) are
the OpenAI fake's: Azure's wire format is OpenAI's. Azure's own answers are added: 401 with
``code: "401"``, 404 ``DeploymentNotFound`` for a deployment it does not have, 404 ``Resource not
found`` without ``api-version``, DALL-E's content-filter annotations, and the content filter's
shapes: ``filter_200`` (HTTP 200 with an ``error`` and no ``data``) and ``filter_mid_stream`` (an
``error`` event after the first partial image, generations and edits alike). Every call, edits
included, is recorded in ``calls``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.fakes.openai_upstream import API_KEY as OPENAI_KEY
from tests.support.fakes.openai_upstream import FakeOpenAI, png_b64

API_KEY = "azure-fake-resource-key"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-token"

DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again.")
FILTERED_200 = "Your task failed as a result of our safety system."

# What DALL-E 3 items carry on Azure (gpt-image returns no annotations).
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
ANNOTATIONS = {
    "prompt_filter_results": {c: {"filtered": False, "severity": "safe"} for c in _CATEGORIES},
    "content_filter_results": {c: {"filtered": False, "severity": "safe"} for c in _CATEGORIES},
}
# Azure's answer to an edit on a DALL-E deployment [?: the docs say only that it is unsupported].
NO_DALLE_EDITS = "DALL-E models don't support the Image Edit API."


def azure_error(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@dataclass
class AzureCall:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    # JSON for generations; the text parts of an edit's multipart (values as sent: strings).
    body: dict[str, Any]
    # Edits: every file part as (field, filename, content type, bytes), in the order sent.
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)


@dataclass
class FakeAzure(FakeOpenAI):
    # deployment name -> the model deployed under it
    deployments: dict[str, str] = field(default_factory=lambda: {
        "gpt-image-1": "gpt-image-1", "img-prod": "gpt-image-1", "dall-e-3": "dall-e-3"})
    calls: list[AzureCall] = field(default_factory=list)

    def reset(self) -> None:
        """Back to a fresh fake (lets one server serve many tests)."""
        for spec in fields(self):
            setattr(self, spec.name, getattr(type(self)(), spec.name))

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/openai/deployments/{deployment}/images/generations", self._deployment,
                  methods=["POST"]),
            Route("/openai/deployments/{deployment}/images/edits", self._deployment_edits,
                  methods=["POST"]),
        ])

    def _refusal(self, request: Request) -> tuple[str, Response | None]:
        """Azure's checks before any work (version, credentials, deployment) and the modes that
        answer instead of the model; ``(deployed model, refusal or None)``."""
        if "api-version" not in request.query_params:
            return "", azure_error(404, "404", "Resource not found")
        key_ok = request.headers.get("api-key") == API_KEY
        token_ok = request.headers.get("authorization") == f"Bearer {ENTRA_TOKEN}"
        if not (key_ok or token_ok):
            return "", azure_error(401, "401", "Access denied due to invalid subscription key or "
                                   "wrong API endpoint. Make sure to provide a valid key for an "
                                   "active subscription and use a correct regional API "
                                   "endpoint for your resource.")
        model = self.deployments.get(request.path_params["deployment"])
        if model is None:
            return "", azure_error(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
        if self.mode == "status":
            return model, Response(self.status_body, status_code=self.status,
                                   headers=self.status_headers, media_type="application/json")
        if self.mode == "filter_200":
            return model, Response(orjson.dumps({"created": int(time.time()), "error": {
                "code": "contentFilter", "message": FILTERED_200}}),
                media_type="application/json")
        return model, None

    async def _deployment_edits(self, request: Request) -> Response:
        """The OpenAI fake's edit handler does the multipart work (parts parsed and checked,
        the answer or the ``image_edit.*`` stream); Azure's own checks decide first."""
        before = len(self.requests)
        answer = await self._edits(_as_openai_call(request))
        recorded = self.requests.pop() if len(self.requests) > before else None
        self.calls.append(AzureCall(
            request.url.path, dict(request.query_params), dict(request.headers),
            recorded.body if recorded else {}, recorded.files if recorded else []))
        model, refused = self._refusal(request)
        if refused is not None:
            return refused
        if not model.startswith("gpt-image"):
            return azure_error(400, "OperationNotSupported", NO_DALLE_EDITS)
        return answer

    async def _deployment(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.calls.append(AzureCall(request.url.path, dict(request.query_params),
                                    dict(request.headers), body))
        model, refused = self._refusal(request)
        if refused is not None:
            return refused
        if model.startswith("gpt-image"):
            if "response_format" in body:
                return azure_error(400, "unknown_parameter", "Unknown parameter: "
                                   "'response_format'.", param="response_format",
                                   type="invalid_request_error")
            if body.get("stream"):
                return StreamingResponse(self._stream(body), media_type="text/event-stream")
            return Response(orjson.dumps(self._images_response(body, body.get("n", 1))),
                            media_type="application/json")
        return Response(orjson.dumps(self._dalle_response(body)), media_type="application/json")

    async def _stream(self, body: dict[str, Any], prefix: str = "image_generation"):
        """The OpenAI fake's stream (``image_edit.*`` for edits), cut by the content filter in
        ``filter_mid_stream`` mode."""
        frames = super()._stream(body, prefix)
        if self.mode != "filter_mid_stream":
            async for frame in frames:
                yield frame
            return
        yield await anext(frames)  # the first partial image, then the output filter strikes
        await frames.aclose()
        error = {"type": "error", "error": {
            "code": "content_filter", "param": None, "type": "invalid_request_error",
            "message": "Generated image was filtered as a result of our safety system."}}
        yield b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"

    def _dalle_response(self, body: dict[str, Any]) -> dict[str, Any]:
        _, width, height = self._size(body)
        item: dict[str, Any] = {"revised_prompt": f"A detailed picture of {body['prompt']}",
                                **ANNOTATIONS}
        if body.get("response_format") == "b64_json":
            item["b64_json"] = png_b64(width, height, (10, 120, 200))
        else:
            item["url"] = "https://dalleprodsec.blob.core.windows.net/private/images/fake.png"
        return {"created": int(time.time()), "data": [item]}


def _as_openai_call(request: Request) -> Request:
    """The same request (its body not yet read) as the OpenAI fake expects it: Azure's
    credentials were checked by Azure's rules, so its bearer check is satisfied."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", f"Bearer {OPENAI_KEY}".encode()))
    return Request({**request.scope, "headers": headers}, request.receive)
