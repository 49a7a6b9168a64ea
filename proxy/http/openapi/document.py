"""``openapi_document(config)``: the OpenAPI 3.1 description of this gateway's HTTP endpoints.

Every route of ``proxy.app.build_routes`` (Socket.IO aside), following the configuration: every
mount in ``server.base_paths``, the hosted-file route when images are stored locally, and bearer
keys when keys are configured (with none, the gateway is open and never answers 401 or 403).
Served at ``GET /openapi.json`` by :func:`openapi_route`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import __version__
from proxy.config import GatewayConfig
from proxy.config.storage import LocalStoreSettings
from proxy.http.openapi.parameters import HEADERS, PARAMETERS
from proxy.http.openapi.responses import openai_schemas, response_schemas
from proxy.http.openapi.schemas import Schema, request_schemas
from proxy.http.responses import JSONBody
from proxy.storage.local import DEFAULT_URL_PATH

DOCUMENT_PATH = "/openapi.json"
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}

# status -> (component name, what it means). Per operation, only the statuses it can return.
_ERRORS = {
    400: ("BadRequest", "A parameter is wrong (`param` names it), the JSON is malformed, or the "
                        "upstream refused the request (its message, type, param and code kept)."),
    401: ("Unauthorized", "No valid `Authorization: Bearer` key (`invalid_api_key`)."),
    403: ("Forbidden", "The key lacks the capability (`capability_missing`) or may not use the "
                       "model (`model_not_allowed`, `param: model`)."),
    404: ("NotFound", "Not found: `model_not_found` (with close matches), `job_not_found`, "
                      "`usage_disabled`, `file_not_found`."),
    409: ("Conflict", "The job id (`X-Job-Id`, `Idempotency-Key`) is in use by a different "
                      "request: another body, or another key (`job_id_conflict`, "
                      "`x-should-retry: false`)."),
    410: ("Gone", "The image URL has expired (`url_expired`); its file is deleted."),
    413: ("PayloadTooLarge", "The body is larger than `server.max_body_bytes` "
                            "(`server.max_upload_bytes` for multipart), or an image is larger "
                            "than 50 MB (`image_too_large`)."),
    415: ("UnsupportedMediaType", "The body is not declared as JSON (`Content-Type: "
                                  "application/json`, or a `+json` type; a charset must be "
                                  "UTF-8) nor, for edits, as `multipart/form-data` "
                                  "(`unsupported_media_type`, `param: content-type`). Form "
                                  "and text bodies are refused: browsers send them across "
                                  "origins without a CORS preflight."),
    429: ("TooManyRequests", "The key's rate (`rate_limit_exceeded`), concurrency "
                            "(`concurrency_limit_exceeded`) or budget (`insufficient_quota`) "
                            "limit, or the upstream is rate limiting."),
    502: ("BadGateway", "The upstream failed: 5xx, refused the gateway's credentials "
                        "(`upstream_auth_failed`), unreachable, dropped the connection, or sent "
                        "no valid answer."),
    503: ("ServiceUnavailable", "The gateway is shutting down (`server_shutting_down`), the "
                                "upstream's circuit is open after repeated failures, the "
                                "usage ledger's database cannot be read to check a key's "
                                "budget or report usage (`usage_ledger_unavailable`), or the "
                                "shared store (Redis) cannot be reached to claim a job id or "
                                "read a job (`store_unavailable`) or to check a key's limits "
                                "(`limits_unavailable`, with `limits.on_store_failure: "
                                "fail_closed`)."),
    504: ("GatewayTimeout", "The upstream did not answer in time (`upstream_timeout`, "
                            "`x-should-retry: false`: it may already be drawing and billing)."),
}
_IMAGE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504)


_RATE_HEADERS = {"x-ratelimit-limit-requests": "RateLimitLimit",
                 "x-ratelimit-remaining-requests": "RateLimitRemaining",
                 "x-ratelimit-reset-requests": "RateLimitReset"}


def _headers(*names: str, **by_header: str) -> dict[str, Schema]:
    known = {"x-request-id": "RequestId", "x-dropped-params": "DroppedParams",
             "x-adjusted-params": "AdjustedParams",
             "retry-after": "RetryAfter", "x-should-retry": "ShouldRetry",
             "location": "Location", "preference-applied": "PreferenceApplied",
             "idempotent-replayed": "Replayed",
             **_RATE_HEADERS, **by_header}
    return {name: {"$ref": f"#/components/headers/{known[name]}"} for name in names}


def _error_responses() -> dict[str, Schema]:
    out = {}
    for status, (name, description) in _ERRORS.items():
        headers = ["x-request-id", "x-should-retry"]
        if status in (429, 503):
            headers.append("retry-after")
        if status == 429:
            headers += list(_RATE_HEADERS)
        out[name] = {"description": description, "headers": _headers(*headers),
                     "content": copy.deepcopy(_ERROR_BODY)}
    return out


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in statuses}


def _parameters(config: GatewayConfig) -> dict[str, Schema]:
    parameters = copy.deepcopy(PARAMETERS)
    # The configured names, as examples: catalog providers serve more (`GET {base}/models`).
    named = [n for m in config.models for n in (m.name, *m.aliases)]
    if config.default_model and config.default_model not in named:
        named.insert(0, config.default_model)
    if named:
        parameters["ModelId"]["schema"]["examples"] = named
    return parameters


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _json(schema: str) -> Schema:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _ok(description: str, schema: str, *headers: str) -> Schema:
    return {"description": description, "headers": _headers("x-request-id", *headers),
            "content": _json(schema)}


def _image_operation(kind: str, base: str, keyed: tuple[int, ...]) -> Schema:
    edit = kind == "edit"
    frame = "ImageEditStreamFrame" if edit else "ImageGenStreamFrame"
    if edit:
        body = {"multipart/form-data": {
                    "schema": {"$ref": "#/components/schemas/CreateImageEditFormRequest"},
                    "encoding": {name: {"contentType": "image/png, image/jpeg, image/webp, "
                                                       "application/octet-stream"}
                                 for name in ("image", "image[]", "images", "images[]")}
                                | {"mask": {"contentType": "image/png, application/octet-stream"}}},
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CreateImageEditJsonRequest"}}}
    else:
        body = _json("CreateImageRequest")
    rate = tuple(_RATE_HEADERS)
    # Both answers name the job: its snapshot (and an async job's result) is one GET away.
    links = {"GetJob": {"operationId": f"getImageJob{_suffix(base)}",
                        "parameters": {"job_id": "$response.header.x-request-id"},
                        "description": "The job's progress snapshot (and, for an async job, "
                                       "its result)."}}
    ok_headers = _headers("x-request-id", "x-dropped-params", "x-adjusted-params",
                          "idempotent-replayed", *rate)
    return {
        "operationId": f"{'createImageEdit' if edit else 'createImage'}{_suffix(base)}",
        "tags": ["images"],
        "summary": "Edit images (OpenAI createImageEdit)" if edit else
                   "Create images (OpenAI createImage)",
        "description": ("The image(s) edited as the prompt says; `local` repaints where the "
                        "mask is transparent." if edit else
                        "Images made from a prompt by the chosen model.")
                       + " `stream: true` answers with Server-Sent Events, each with an `id`. "
                         "A client that hangs up cancels the job (logged as 499, never sent), "
                         "unless it chose the job id and `on_disconnect: finish` is configured "
                         "for its key or model: then the job runs on, and the stream "
                         "re-attaches with the same request (or `GET "
                         "{base}/images/jobs/{job_id}/events`) and `Last-Event-ID`.",
        "parameters": [_param("JobIdHeader"), _param("IdempotencyKey"), _param("LastEventId"),
                       _param("Prefer")],
        "requestBody": {"required": True, "content": body},
        "responses": {
            "200": {"description": "The images (`ImagesResponse` plus `id`, `provider`, "
                                   "`model`, `cost`), or with `stream: true` the event stream: "
                                   "partial images, then one `*.completed` per image; a failure "
                                   "after the stream began is an `error` event.",
                    "headers": ok_headers, "links": links,
                    "content": _json("GatewayImagesResponse")
                               | {"text/event-stream": {"schema": {
                                   "$ref": f"#/components/schemas/{frame}"}}}},
            "202": {"description": "With `Prefer: respond-async`: the job was accepted and runs "
                                   "on; poll its `Location`.",
                    "headers": _headers("x-request-id", "x-dropped-params", "x-adjusted-params",
                                        "location", "preference-applied",
                                        "idempotent-replayed", *rate),
                    "links": links,
                    "content": _json("ImageJob")},
            **_errors(*(s for s in _IMAGE_ERRORS if s not in (401, 403) or s in keyed)),
        },
    }


def _suffix(base: str) -> str:
    """An operationId suffix per mount: ``/v1`` → ``V1``, the root → ``Root``."""
    return "".join(p[:1].upper() + p[1:] for p in base.replace("-", "/").split("/")) or "Root"


def _get(operation_id: str, summary: str, ok: Schema, *statuses: int,
         parameters: list[Schema] | None = None, tags: list[str] | None = None,
         security: list[Any] | None = None) -> Schema:
    operation: Schema = {"operationId": operation_id, "summary": summary,
                         "tags": tags or ["gateway"], "responses": {"200": ok,
                                                                    **_errors(*statuses)}}
    if parameters:
        operation["parameters"] = parameters
    if security is not None:
        operation["security"] = security
    return operation


def _mount_paths(base: str, keyed: tuple[int, ...]) -> dict[str, Schema]:
    suffix = _suffix(base)
    unauthorized = tuple(s for s in keyed if s == 401)
    return {
        f"{base}/images/generations": {"post": _image_operation("generation", base, keyed)},
        f"{base}/images/edits": {"post": _image_operation("edit", base, keyed)},
        f"{base}/images/jobs/{{job_id}}": {"get": _get(
            f"getImageJob{suffix}", "A job's progress snapshot (and an async job's result)",
            _ok("The job's snapshot.", "JobSnapshot"), *unauthorized, 404, 503,
            parameters=[_param("JobId")], tags=["images"])},
        f"{base}/images/jobs/{{job_id}}/events": {"get": _job_events(suffix, unauthorized)},
        f"{base}/models": {"get": _get(
            f"listModels{suffix}", "The models this gateway serves, with their parameters",
            _ok("The served models.", "ModelList"), *unauthorized, tags=["models"])},
        f"{base}/models/{{model}}": {"get": _get(
            f"getModel{suffix}", "One served model, by name or alias",
            _ok("The model.", "Model"), *unauthorized, 404,
            parameters=[_param("ModelId")], tags=["models"])},
        f"{base}/usage": {"get": _get(
            f"getUsage{suffix}", "The calling key's usage: totals, per model, and rows",
            _ok("The usage report.", "UsageReport"), 400, *keyed, 404, 503,
            parameters=[_param(p) for p in ("StartTime", "EndTime", "UsageModel", "Limit",
                                            "Offset", "Key")], tags=["usage"])},
    }


def _job_events(suffix: str, unauthorized: tuple[int, ...]) -> Schema:
    operation = _get(
        f"getImageJobEvents{suffix}", "A streamed job's events again, after `Last-Event-ID`",
        {"description": "The events after `Last-Event-ID` (all of them without it): live while "
                        "the job runs in this process; once it ended (or while it runs in "
                        "another process of a fleet, when it ends) replayed from its kept "
                        "answer.", "headers": _headers("x-request-id"),
         "content": {"text/event-stream": {"schema": {
             "$ref": "#/components/schemas/ImageGenStreamFrame"}}}},
        400, *unauthorized, 404, 429, 502, 503, 504,
        parameters=[_param("JobId"), _param("LastEventId")], tags=["images"])
    operation["description"] = (
        "For a client that lost its stream of a job whose id it chose: only the key that "
        "started the job reads it (another key's job is a 404). A job that did not stream "
        "its answer is a 400 (`job_not_streamed`); a job that failed before its stream began "
        "answers with that failure's status, as the POST did.")
    return operation


def _file_paths() -> dict[str, Schema]:
    image = {"schema": {"type": "string", "format": "binary"}}
    parameters = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "expires", "in": "query", "required": True,
         "description": "Unix seconds, as signed.",
         "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
        {"name": "signature", "in": "query", "required": True,
         "description": "HMAC-SHA256 (hex) over the name and the expiry.",
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    ]

    def operation(method: str) -> Schema:
        return _get(f"{method}HostedImage", "A hosted image (`response_format: \"url\"`)", {
            "description": "The image.", "headers": _headers("x-request-id"),
            "content": {"image/png": image, "image/jpeg": image, "image/webp": image}},
            403, 404, 410, parameters=parameters, tags=["files"], security=[])

    return {f"{DEFAULT_URL_PATH}/{{name}}": {"get": operation("get"),
                                             "head": operation("head")}}


def _text(media_type: str, description: str) -> Schema:
    return {"description": description, "headers": _headers("x-request-id"),
            "content": {media_type: {"schema": {"type": "string"}}}}


def _fixed_paths(config: GatewayConfig) -> dict[str, Schema]:
    not_ready = {"description": "Not ready: shutting down, or Redis does not answer.",
                 "headers": _headers("x-request-id"), "content": _json("Readiness")}
    paths = {
        "/healthz": {"get": _get("healthz", "`{\"status\": \"ok\"}` while the process is alive",
                                 _ok("Alive.", "Health"), security=[])},
        "/readyz": {"get": _get("readyz", "Whether this process takes requests (for load "
                                          "balancers)", _ok("Ready.", "Readiness"), security=[])},
        "/metrics": {"get": _get("metrics", "Prometheus metrics", _text(
            "text/plain", "The Prometheus text exposition format."), security=[])},
        "/": {"get": _get("playground", "The web playground (HTML)", _text(
            "text/html", "The page; it calls the API under `/v1` (or the first mount)."),
            tags=["playground"], security=[])},
        "/playground/{name}": {"get": _get(
            "playgroundAsset", "The playground's own files", {
                "description": "The file.", "headers": _headers("x-request-id"),
                "content": {t: {"schema": {"type": "string"}}
                            for t in ("text/css", "text/javascript")}},
            404, tags=["playground"], security=[], parameters=[{
                "name": "name", "in": "path", "required": True,
                "schema": {"type": "string", "examples": ["playground.js", "playground.css",
                                                          "socket.io.min.js"]}}])},
        "/docs": {"get": _get("docs", "This document, browsable (Swagger UI)", _text(
            "text/html", "The API reference page; it reads `/openapi.json`."),
            tags=["docs"], security=[])},
        "/docs/{name}": {"get": _get(
            "docsAsset", "The API reference page's own files (Swagger UI, vendored)", {
                "description": "The file.", "headers": _headers("x-request-id"),
                "content": {t: {"schema": {"type": "string"}}
                            for t in ("text/css", "text/javascript")}},
            404, tags=["docs"], security=[], parameters=[{
                "name": "name", "in": "path", "required": True,
                "schema": {"type": "string", "examples": ["swagger-ui-bundle.js", "docs.js",
                                                          "swagger-ui.css"]}}])},
        DOCUMENT_PATH: {"get": _get("openapi", "This document", {
            "description": "The OpenAPI document.",
            "content": {"application/json": {"schema": {"type": "object"}}}}, security=[])},
    }
    paths["/readyz"]["get"]["responses"]["503"] = not_ready  # its own body, not an error
    if isinstance(config.storage, LocalStoreSettings):
        paths |= _file_paths()
    return paths


def openapi_document(config: GatewayConfig, *, default_model: str | None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a gateway running ``config`` (a fresh, mutable dict).
    ``default_model``: the model a request naming none gets (the served-model table's
    ``default``: ``default_model``, or the only model served); without one ``model`` is
    required."""
    keyed = (401, 403) if config.keys else ()
    paths = _fixed_paths(config)
    for base in config.server.base_paths:
        paths |= _mount_paths(base, keyed)
    bearer = {"bearerAuth": []}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "image-proxy",
            "version": __version__,
            "summary": "OpenAI-compatible image-generation gateway.",
            "description": "OpenAI's Images API (the official SDKs work unchanged) in front of "
                           "many providers, with streamed partial images, live progress "
                           "(Socket.IO namespace `/image-progress`, not described here), keys, "
                           "limits and usage. Every response carries `x-request-id`; every "
                           "error is OpenAI's `{\"error\": {message, type, param, code}}`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("images", "models", "usage", "files", "gateway",
                                       "playground", "docs")],
        # With no keys the gateway is open: a bearer token is accepted and ignored.
        "security": [bearer] if config.keys else [{}, bearer],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "A gateway key (`image-proxy new-key`)."}},
            "schemas": openai_schemas() | request_schemas(default_model)
                       | response_schemas(),
            "parameters": _parameters(config),
            "headers": copy.deepcopy(HEADERS),
            "responses": _error_responses(),
        },
    }


Endpoint = Callable[[Request], Awaitable[Response]]


def openapi_endpoint(config: GatewayConfig, *, default_model: str | None) -> Endpoint:
    """The ``GET /openapi.json`` endpoint for ``config`` (the document is built once)."""

    @cache
    def document() -> bytes:
        return JSONBody(openapi_document(config, default_model=default_model)).body

    async def endpoint(request: Request) -> Response:
        return Response(document(), media_type="application/json")

    return endpoint


def openapi_route(config: GatewayConfig, *, default_model: str | None) -> Route:
    """``Route("/openapi.json", ...)``: add it to the gateway's routes."""
    return Route(DOCUMENT_PATH, openapi_endpoint(config, default_model=default_model),
                 methods=["GET"], name="openapi")
