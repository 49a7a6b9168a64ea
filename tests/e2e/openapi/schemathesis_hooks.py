"""Schemathesis extension hooks for ``test_every_check.py`` (loaded by the CLI through
``SCHEMATHESIS_HOOKS``).

``positive_data_acceptance`` wants every request the document calls valid to be accepted. Some
refusals of such requests are the contract, stated in the document, because OpenAPI cannot
express them in a schema; :func:`valid_data_is_accepted_or_refused_as_documented` is that check
with exactly these exceptions, each checked for the answer the document promises:

- ``end_time`` not after ``start_time`` on ``{base}/usage`` (a rule between two parameters):
  it must be a 400 naming ``end_time``, and only then.
- A value inside the document's universal bounds that the chosen model's rules do not take
  (its sizes, ``n``, qualities: ``GET {base}/models`` lists them): a 400 naming the parameter
  and the model.
- ``Idempotency-Key`` and ``X-Job-Id`` that name different jobs: a 400 naming
  ``idempotency-key`` (a rule between two headers).
- What an input image holds (its bytes, or what its URL serves) is no schema's to describe: an
  image that is not a usable PNG, JPEG or WebP (or a mask that does not fit it) is a 400 naming
  ``image`` or ``mask``.
- Two spellings of one parameter (``aspect_ratio`` and ``aspectRatio``, ``resolution`` and
  ``imageSize``...) with different values: the document says so in each alias's description;
  a 400 naming one of them.
- A job that did not stream its answer, read through ``{base}/images/jobs/{id}/events``: a 400
  ``job_not_streamed``, as the operation describes.

The built-in check is left out of the run (``--exclude-checks positive_data_acceptance``) and
this one takes its place; every other check runs as shipped.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import positive_data_acceptance

_MODEL_RULE = re.compile(r"\bmodel '[^']+'")
_SPELLINGS = re.compile(r"'([^']+)' and '([^']+)' are the same parameter")


def _error(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body.get("error") or {} if isinstance(body, dict) else {}


def _times(case: Any) -> tuple[float, float] | None:
    query = case.query or {}
    try:
        return float(query["start_time"]), float(query["end_time"])
    except (KeyError, TypeError, ValueError):
        return None


_IMAGE_CONTENT = {"invalid_image", "invalid_mask", "mask_size_mismatch", "image_url_invalid",
                  "image_url_unreachable", "image_url_forbidden"}


def _header(case: Any, name: str) -> str | None:
    return next((value for key, value in (case.headers or {}).items()
                 if key.lower() == name), None)


def _two_spellings(case: Any, error: dict[str, Any]) -> bool:
    found = _SPELLINGS.search(error.get("message") or "")
    body = case.body if isinstance(case.body, dict) else {}
    return (found is not None and error.get("param") in found.groups()
            and all(name in body for name in found.groups()))


def _different_jobs(case: Any, error: dict[str, Any]) -> bool:
    return (error.get("param") == "idempotency-key" and error.get("code") == "invalid_job_id"
            and None not in (_header(case, "idempotency-key"), _header(case, "x-job-id")))


@schemathesis.check
def valid_data_is_accepted_or_refused_as_documented(ctx: Any, response: Any,
                                                    case: Any) -> bool | None:
    if case.method.upper() != case.operation.method.upper() or response.status_code in (
            401, 403):  # an undeclared method, or no credentials: other checks' business
        return positive_data_acceptance(ctx, response, case)
    error = _error(response) if response.status_code == 400 else {}
    if _different_jobs(case, error):
        return None
    if case.path.endswith("/usage"):
        times = _times(case)
        if times is not None and times[1] <= times[0]:
            if response.status_code != 400 or error.get("param") != "end_time":
                raise Failure(operation=case.operation.label,
                              title="end_time not after start_time was not refused",
                              message=f"Expected a 400 naming end_time, got "
                                      f"{response.status_code}: {response.text[:300]}")
            return None
    elif case.path.endswith(("/images/generations", "/images/edits")):
        if error.get("param") and _MODEL_RULE.search(error.get("message") or ""):
            return None
        if _two_spellings(case, error):
            return None
        if error.get("param") in ("image", "mask") and error.get("code") in _IMAGE_CONTENT:
            return None
    elif case.path.endswith("/events") and error.get("code") == "job_not_streamed":
        return None
    return positive_data_acceptance(ctx, response, case)
