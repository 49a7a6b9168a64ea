"""Google's answers that are not images -> our errors.

Two kinds. HTTP errors carry Google's envelope ``{"error": {"code", "message", "status",
"details"}}``. Refusals arrive as HTTP 200 (a blocked prompt, a blocked or missing image): they
become a :class:`Refusal`, so one refused call of a fanned-out request can be reported next to
the images of the others instead of failing them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.core.errors import GatewayError

# Imagen on Vertex refuses a prompt with HTTP 400 and this wording [?: seen in the wild].
_RAI_WORDING = re.compile(r"Responsible AI|sensitive words", re.I)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP-200 answer without an image. ``blocked``: a safety filter said no (400
    ``content_policy_violation``); otherwise the model just drew nothing (400
    ``no_image_returned``, carrying what it said)."""

    blocked: bool
    reason: str
    message: str

    def entry(self) -> dict[str, str]:
        """The item listed in ``filtered`` when other images of the request succeeded."""
        return {"reason": self.reason, "message": self.message}

    def error(self, model: str) -> GatewayError:
        if self.blocked:
            return GatewayError(
                400, f"The request was refused by {model}'s safety filters ({self.reason}): "
                     f"{self.message}", code="content_policy_violation")
        return GatewayError(
            400, f"{model} returned no image ({self.reason}): {self.message}",
            code="no_image_returned")


def refusals_error(refusals: list[Refusal], model: str) -> GatewayError:
    """Every call was refused: a safety block wins over 'no image'; all reasons are told."""
    first = next((r for r in refusals if r.blocked), refusals[0])
    error = first.error(model)
    others = [r for r in refusals if r is not first]
    if others:
        error.message += " Also: " + "; ".join(f"{r.reason}: {r.message}" for r in others)
    return error


def google_error(status: int, raw: bytes, headers: Mapping[str, str]) -> GatewayError:
    """An HTTP error from the Gemini API or Vertex AI, in our envelope."""
    error = _envelope(raw)
    message = str(error.get("message") or "").strip() or _text(raw) or f"HTTP {status}"
    state = str(error.get("status") or "")
    reasons = {d.get("reason") for d in _details(error)}

    if state in ("UNAUTHENTICATED", "PERMISSION_DENIED") or status in (401, 403) or (
            reasons & {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED"}):
        return GatewayError(502, f"Google rejected the gateway's credentials: {message}",
                            type="upstream_error", code="upstream_auth_failed")
    if state == "NOT_FOUND" or status == 404:
        return GatewayError(404, f"Google does not know this model: {message}",
                            param="model", code="model_not_found")
    if state == "RESOURCE_EXHAUSTED" or status == 429:
        retry = _retry_after(headers, error)
        return GatewayError(429, message, type="rate_limit_error", code="rate_limit_exceeded",
                            headers={"retry-after": retry} if retry else None, transient=True)
    if state == "DEADLINE_EXCEEDED" or status in (408, 504):
        return GatewayError(504, f"Google timed out: {message}", type="upstream_error",
                            code="upstream_timeout", retryable=False)
    if status == 400 and _RAI_WORDING.search(message):
        return GatewayError(400, message, code="content_policy_violation")
    if state == "INVALID_ARGUMENT" or (status == 400 and state in ("", "OUT_OF_RANGE")):
        return GatewayError(400, message, code="invalid_argument")
    if status == 413:
        return GatewayError(413, message, code="request_too_large")
    # FAILED_PRECONDITION (billing, region), INTERNAL, UNAVAILABLE, anything else.
    label = f" {state}" if state else ""
    return GatewayError(502, f"Google failed (HTTP {status}{label}): {message}",
                        type="upstream_error", code="upstream_error",
                        transient=state in ("INTERNAL", "UNAVAILABLE") or status in (500, 503))


def _envelope(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    # Some Google front ends wrap the envelope in a one-item list.
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _text(raw: bytes) -> str:
    return raw[:500].decode("utf-8", "replace").strip()


def _retry_after(headers: Mapping[str, str], error: dict[str, Any]) -> str | None:
    """The upstream's ``retry-after``, else the ``RetryInfo.retryDelay`` ("37s") Google sends."""
    for name, value in headers.items():
        if name.lower() == "retry-after" and value.strip():
            return value.strip()
    for detail in _details(error):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(max(1, math.ceil(float(delay[:-1]))))
            except ValueError:
                continue
    return None
