"""The response schemas of the document: OpenAI's own (copied, MIT, from
``openai-images-schemas.json``) and the gateway's additions (job ids, cost, progress, usage,
errors), and the Server-Sent Events of a stream.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from proxy.http.openapi.schemas import Schema
from proxy.http.usage_query import MAX_LIMIT

_OPENAI_FILE = Path(__file__).with_name("openai-images-schemas.json")
# OpenAI's enums predate gpt-image-2 (any WxH) and models whose qualities differ.
_RELAXED = ("size", "quality")
STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _relax(node: Any) -> Any:
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name in _RELAXED:
                if isinstance(properties.get(name), dict):
                    properties[name].pop("enum", None)
        for value in node.values():
            _relax(value)
    elif isinstance(node, list):
        for value in node:
            _relax(value)
    return node


@cache
def _openai_schemas() -> dict[str, Schema]:
    return json.loads(_OPENAI_FILE.read_text(encoding="utf-8"))["schemas"]


def openai_schemas() -> dict[str, Schema]:
    """OpenAI's images schemas (MIT; see the data file's ``source``), sizes and qualities open."""
    return _relax(copy.deepcopy(_openai_schemas()))


def _sse_frame(events: dict[str, str]) -> Schema:
    """One Server-Sent Event: its ``id``, its ``event`` name and its ``data``, JSON of the
    named schema."""
    return {"type": "object", "required": ["id", "event", "data"], "properties": {
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$",
               "description": "The event's number within the job (1, 2, …): a client that "
                              "lost the stream resumes after it with `Last-Event-ID`."}},
        "anyOf": [
            {"properties": {"event": {"const": event},
                            "data": {"type": "string", "contentMediaType": "application/json",
                                     "contentSchema": _ref(schema)}}}
            for event, schema in events.items()
        ], "description": "One event of the stream (`id:`, `event:` and `data:` lines). "
                          "Keep-alives are `: keep-alive` comment lines on their own, never "
                          "followed by a blank line."}


def response_schemas() -> dict[str, Schema]:
    nullable_string = {"type": ["string", "null"]}
    error = _ref("Error")
    return {
        "GatewayImagesResponse": {"allOf": [_ref("ImagesResponse"), {
            "type": "object",
            "required": ["created", "data", "id", "provider", "model", "cost"],
            "properties": {
                "id": {"type": "string", "description": "The job id, equal to `x-request-id`."},
                "provider": {"type": "string", "description": "The adapter that served it."},
                "model": {"type": "string", "description": "The model that served it (a "
                                                           "fallback's, if one did)."},
                "cost": {"type": ["number", "null"], "minimum": 0,
                         "description": "USD; null when no price is known."},
                "usage": {"type": "object",
                          "required": ["prompt_tokens_details", "completion_tokens_details"],
                          "properties": {
                    "total_cost": {"type": "number", "minimum": 0},
                    "currency": {"const": "USD"},
                    "prompt_tokens_details": {
                        "type": ["object", "null"], "description": "The multi-provider API's "
                        "name for `input_tokens_details` (the same object)."},
                    "completion_tokens_details": {
                        "type": ["object", "null"], "description": "The multi-provider API's "
                        "name for `output_tokens_details`; null when the provider reports "
                        "none."}}},
                "text": {"type": "string", "description": "Gemini: text written beside the "
                                                          "image."},
                "parts": {"type": "array", "items": {"type": "object", "required": ["type"],
                                                     "properties": {
                    "type": {"enum": ["text", "image"]}, "text": {"type": "string"},
                    "index": {"type": "integer", "minimum": 0}}}},
                "filtered": {"type": "array", "items": {"type": "object"},
                             "description": "Images a provider's safety filter withheld."},
            },
        }]},
        "StreamError": {
            "type": "object", "required": ["type", "error"],
            "properties": {"type": {"const": "error"}, "error": error},
            "description": "A failure after the stream began; the official SDKs raise it.",
        },
        "ImageGenStreamFrame": _sse_frame({
            "image_generation.partial_image": "ImageGenPartialImageEvent",
            "image_generation.completed": "ImageGenCompletedEvent",
            # A generation body carrying images is an edit, and streams as one.
            "image_edit.partial_image": "ImageEditPartialImageEvent",
            "image_edit.completed": "ImageEditCompletedEvent",
            "error": "StreamError",
        }),
        "ImageEditStreamFrame": _sse_frame({
            "image_edit.partial_image": "ImageEditPartialImageEvent",
            "image_edit.completed": "ImageEditCompletedEvent",
            "error": "StreamError",
        }),
        "JobSnapshot": {
            "type": "object",
            "required": ["job_id", "seq", "status", "percent", "model", "created_at",
                         "updated_at", "estimated"],
            "properties": {
                "job_id": {"type": "string", "format": "uuid"},
                "seq": {"type": "integer", "minimum": 0,
                        "description": "Grows by one per update."},
                "status": {"enum": STATUSES},
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
                "model": {"type": "string"},
                "created_at": {"type": "number"},
                "updated_at": {"type": "number"},
                "step": {"type": ["integer", "null"]},
                "total_steps": {"type": ["integer", "null"]},
                "eta_s": {"type": ["number", "null"]},
                "queue_position": {
                    "type": ["integer", "null"], "minimum": 1,
                    "description": "While the job waits in its backend's own queue (status "
                                   "`queued`, e.g. a busy ComfyUI server): its place there, "
                                   "1 = next to run. Null otherwise."},
                "stage": nullable_string,
                "message": nullable_string,
                "estimated": {"type": "boolean",
                              "description": "The percentage is estimated from recent "
                                             "durations, not reported by the backend."},
                "error": {"anyOf": [error, {"type": "null"}]},
                "result": {**_ref("GatewayImagesResponse"),
                           "description": "An asynchronous job's answer, once it succeeded."},
            },
            "description": "A job's progress (the Socket.IO `progress` event). For a job started "
                           "with `Prefer: respond-async`, also its `result` (or `error`) once "
                           "it has ended.",
        },
        "ImageJob": {
            "type": "object",
            "required": ["id", "object", "model", "created", "status", "percent"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "object": {"const": "image.job"},
                "model": {"type": "string"},
                "created": {"type": "integer"},
                "status": {"enum": STATUSES},
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
            },
            "description": "An accepted asynchronous job: poll `GET {base}/images/jobs/{id}` "
                           "(the `Location` header) or watch it on Socket.IO `/image-progress`.",
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "created", "owned_by", "provider", "aliases",
                         "capabilities", "parameters", "pricing"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
                "provider": {"type": "string"},
                "upstream_model": {"type": "string"},
                "aliases": {"type": "array", "items": {"type": "string"}},
                "capabilities": {"type": "object",
                                 "required": ["generations", "edits", "streaming"],
                                 "properties": {
                                     "generations": {"type": "boolean"},
                                     "edits": {"type": "boolean"},
                                     "streaming": {"enum": ["native", "emulated"]}}},
                "parameters": {"type": "object", "additionalProperties": {"type": "object"},
                               "description": "JSON-schema-like descriptors of every parameter "
                                              "the model takes, with its own limits."},
                "pricing": {"type": ["object", "null"]},
            },
        },
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
        "UsageTotals": {
            "type": "object",
            "required": ["requests", "images", "input_tokens", "output_tokens", "total_tokens",
                         "cost", "unpriced_requests"],
            "properties": {name: {"type": "integer", "minimum": 0} for name in (
                "requests", "images", "input_tokens", "output_tokens", "total_tokens",
                "unpriced_requests")} | {"cost": {"type": "number", "minimum": 0}},
        },
        "UsageRecord": {
            "type": "object",
            "required": ["job_id", "key", "model", "provider", "kind", "n", "images", "status",
                         "latency_ms", "created_at"],
            "properties": {
                "job_id": {"type": "string"}, "key": {"type": "string"},
                "model": {"type": "string"}, "provider": {"type": "string"},
                "kind": {"enum": ["generation", "edit"]},
                "n": {"type": "integer", "minimum": 0},
                "images": {"type": "integer", "minimum": 0},
                "size": nullable_string, "quality": nullable_string,
                "input_tokens": {"type": ["integer", "null"]},
                "output_tokens": {"type": ["integer", "null"]},
                "total_tokens": {"type": ["integer", "null"]},
                "cost": {"type": ["number", "null"]},
                "latency_ms": {"type": "integer", "minimum": 0},
                "status": {"enum": ["succeeded", "failed", "cancelled"]},
                "error_code": nullable_string, "user": nullable_string,
                "metadata": {"type": ["object", "null"]},
                "created_at": {"type": "number"},
            },
        },
        "UsageReport": {
            "type": "object",
            "required": ["object", "totals", "by_model", "data", "has_more"],
            "properties": {
                "object": {"const": "usage"},
                "totals": _ref("UsageTotals"),
                "by_model": {"type": "array", "items": {"allOf": [
                    _ref("UsageTotals"),
                    {"type": "object", "required": ["model"],
                     "properties": {"model": {"type": "string"}}}]}},
                "data": {"type": "array", "maxItems": MAX_LIMIT, "items": _ref("UsageRecord"),
                         "description": "One page of rows, newest first."},
                "has_more": {"type": "boolean"},
            },
        },
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Readiness": {"type": "object", "required": ["status"], "properties": {
            "status": {"enum": ["ready", "not ready"]},
            "reason": {"type": "string", "description": "Why not."}}},
    }
