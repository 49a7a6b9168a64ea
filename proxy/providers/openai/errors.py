"""OpenAI-dialect upstream answers -> our errors and usage.

Shared by every adapter whose upstream speaks OpenAI's error envelope (OpenAI, Azure, xAI,
compatible servers). The upstream's own message is kept; the status says whose fault it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.core.errors import GatewayError
from proxy.core.events import Usage


def error_envelope(raw: bytes) -> tuple[dict[str, Any], str]:
    """The upstream's ``error`` object (if any) and a readable message."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return {}, (text[:500] or "no message")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error, str(error.get("message") or "no message")
    if isinstance(error, str):
        return {}, error
    return {}, raw[:500].decode("utf-8", "replace")


def error_from_upstream(
    status: int, raw: bytes, headers: Mapping[str, str], *, mid_stream: bool = False
) -> GatewayError:
    error, message = error_envelope(raw)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    if code is not None and code.isdigit():
        code = None  # Azure repeats the HTTP status ("429"): not a code a client can act on
    param = error.get("param") if isinstance(error.get("param"), str) else None
    kind = error.get("type") if isinstance(error.get("type"), str) else None

    if mid_stream:
        return GatewayError(502, f"The upstream failed mid-stream: {message}",
                            type=kind or "upstream_error", param=param,
                            code=code or "upstream_error")
    if status in (400, 422):
        # The request itself was refused: the client can act on it, so hand it on as it is.
        return GatewayError(400, message, type=kind or "invalid_request_error", param=param,
                            code=code)
    if status in (401, 403):
        return GatewayError(502, f"The upstream rejected the gateway's credentials: {message}",
                            type="upstream_error", code="upstream_auth_failed")
    if status == 404:
        return GatewayError(404, f"The upstream does not know this model: {message}",
                            param="model", code="model_not_found")
    if status == 413:
        return GatewayError(413, message, code=code or "request_too_large")
    if status == 429:
        wanted = ("retry-after", "retry-after-ms")
        passed = {k: v for k, v in headers.items() if k.lower() in wanted}
        quota = code == "insufficient_quota" or kind == "insufficient_quota"
        return GatewayError(429, message, type=kind or "rate_limit_error",
                            code=code or "rate_limit_exceeded", headers=passed,
                            retryable=False if quota else None, transient=not quota)
    if status in (408, 504):
        return GatewayError(504, f"The upstream timed out: {message}", type="upstream_error",
                            code="upstream_timeout", retryable=False)
    # 500/502/503: the upstream failed before answering; retrying (or a fallback) is safe.
    return GatewayError(502, f"The upstream failed (HTTP {status}): {message}",
                        type="upstream_error", code="upstream_error",
                        transient=status in (500, 502, 503))


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI's ``usage`` object, tolerant of missing parts; None when absent or unusable."""
    if not isinstance(raw, dict):
        return None

    def number(source: Any, key: str) -> int:
        value = source.get(key) if isinstance(source, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    inputs = raw.get("input_tokens_details")
    outputs = raw.get("output_tokens_details")
    return Usage(
        input_tokens=number(raw, "input_tokens"),
        output_tokens=number(raw, "output_tokens"),
        input_text_tokens=number(inputs, "text_tokens"),
        input_image_tokens=number(inputs, "image_tokens"),
        output_image_tokens=number(outputs, "image_tokens") if isinstance(outputs, dict) else None,
        output_text_tokens=number(outputs, "text_tokens") if isinstance(outputs, dict) else None,
    )
