"""The reusable headers and parameters of the OpenAPI document (``components``)."""

from __future__ import annotations

from proxy.http.openapi.schemas import UUID, Schema
from proxy.http.usage_query import MAX_LIMIT


def _header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS: dict[str, Schema] = {
    "RequestId": {**_header("The request's id; for image requests also the job id and the "
                            "response `id`."), "required": True},
    "DroppedParams": _header("Comma-separated parameters the model could not use (or the "
                             "gateway does not know), dropped instead of refused."),
    "AdjustedParams": _header(
        "Parameters sent in one spelling and sent upstream in another (a `size` as an "
        "`aspect_ratio` and `resolution`, an `aspect_ratio` as a `size`): entries separated "
        "by `;`, each `name=value->name=value[,name=value]`, values percent-encoded, e.g. "
        "`size=1536x1024->aspect_ratio=3:2,resolution=2K`.",
        {"type": "string", "pattern": r"^[a-z_]+=[^;,=]*->[a-z_]+=[^;,=]*(,[a-z_]+=[^;,=]*)*"
                                      r"(;[a-z_]+=[^;,=]*->[a-z_]+=[^;,=]*(,[a-z_]+=[^;,=]*)*)*$"}),
    "RetryAfter": _header("Seconds to wait before trying again.",
                          {"type": "string", "pattern": "^[0-9]+$"}),
    "ShouldRetry": _header("`false` when the official SDKs must not retry on their own.",
                           {"enum": ["true", "false"]}),
    "RateLimitLimit": _header("Requests per minute the key may make."),
    "RateLimitRemaining": _header("Requests left in the current minute."),
    "RateLimitReset": _header("When the window frees a request, e.g. `12s`, `1m30s`."),
    "Location": _header("Where to poll the job: `{base}/images/jobs/{id}`."),
    "PreferenceApplied": _header("`respond-async` when the job was detached.",
                                 {"const": "respond-async"}),
    "Replayed": _header("`true` when the request repeated one already made under its job id: "
                        "it attached to that job, or its kept answer was replayed (no new "
                        "upstream call, no new charge).", {"const": "true"}),
}
PARAMETERS: dict[str, Schema] = {
    "JobIdHeader": {
        "name": "X-Job-Id", "in": "header", "required": False,
        "description": "Choose the job id yourself (a UUID), e.g. to subscribe to its progress "
                       "before posting. It becomes the `x-request-id` and the response `id`, "
                       "and makes the request idempotent: sent again with the same body it "
                       "attaches to the job or replays its answer (one upstream call, one "
                       "charge); a failure worth retrying (429, 5xx, timeout) frees the id. "
                       "Malformed: 400 naming `x-job-id`; in use by a different request: 409.",
        "schema": {"type": "string", "format": "uuid", "pattern": UUID},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "The same as `X-Job-Id`, as any text: a UUID is the job id, other text "
                       "names one job per key (read its id from `x-request-id`). Sent with "
                       "`X-Job-Id`, both must name the same job: otherwise a 400 naming "
                       "`idempotency-key`.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                   "pattern": "^[\\x20-\\x7e]+$"},
    },
    "LastEventId": {
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": "The `id` of the last stream event received: the stream resumes after "
                       "it (with a job id, and `stream: true`).",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
    "Prefer": {
        "name": "Prefer", "in": "header", "required": False,
        "description": "`respond-async` (RFC 7240): answer at once with `202` and an "
                       "`image.job`; the result is read from `GET {base}/images/jobs/{id}`. "
                       "Not with `stream: true` (400).",
        "schema": {"type": "string", "examples": ["respond-async"]},
    },
    "JobId": {"name": "job_id", "in": "path", "required": True,
              "description": "The job's id (`x-request-id` of the request that started it).",
              "schema": {"type": "string"}},
    "ModelId": {"name": "model", "in": "path", "required": True,
                "description": "A model name or alias; it may contain `/` "
                               "(`openai/gpt-image-1`).",
                "schema": {"type": "string"}},
    "StartTime": {"name": "start_time", "in": "query", "required": False,
                  "description": "Rows from this time on (unix seconds, inclusive).",
                  "schema": {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,9})?$"}},
    "EndTime": {"name": "end_time", "in": "query", "required": False,
                "description": "Rows before this time (unix seconds, exclusive). With "
                               "`start_time`, it must be later than `start_time`: an "
                               "`end_time` at or before it is a 400 naming `end_time` "
                               "(`invalid_value`).",
                "schema": {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,9})?$"}},
    "UsageModel": {"name": "model", "in": "query", "required": False,
                   "description": "Only this model's rows.",
                   "schema": {"type": "string", "minLength": 1}},
    "Limit": {"name": "limit", "in": "query", "required": False,
              "description": "Rows per page.",
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}},
    "Offset": {"name": "offset", "in": "query", "required": False,
               "schema": {"type": "integer", "minimum": 0, "maximum": 10**15, "default": 0}},
    "Key": {"name": "key", "in": "query", "required": False,
            "description": "Admin keys: one key's usage (every key's without it). Other keys "
                           "may only name themselves (403 otherwise).",
            "schema": {"type": "string"}},
}
