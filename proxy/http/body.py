"""Reading request bodies safely: size-capped, and errors in OpenAI's shape."""

from __future__ import annotations

from typing import Any

import orjson
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from proxy.core.errors import GatewayError

CONTENT_TYPE = "content-type"
MULTIPART = "multipart/form-data"


def media_type(request: Request) -> tuple[str, dict[str, str]]:
    """The request's media type (lower case, ``""`` when none was sent) and its parameters."""
    kind, params = parse_options_header(request.headers.get(CONTENT_TYPE))
    return kind.decode("latin-1"), {name.decode("latin-1").lower(): value.decode("latin-1")
                                    for name, value in params.items()}


def is_json(kind: str) -> bool:
    """``application/json`` or a structured ``+json`` type (RFC 6839)."""
    top, _, sub = kind.partition("/")
    return top == "application" and (sub == "json" or (sub.endswith("+json") and sub != "+json"))


def unsupported_media_type(request: Request, accepted: str) -> GatewayError:
    """415: the body's content type is not one this endpoint reads. Browsers post ``text/plain``
    and form types across origins without asking first (CORS "simple requests"), so JSON is only
    read when it is declared as JSON."""
    sent = request.headers.get(CONTENT_TYPE)
    shown = "none" if not sent else repr(sent[:100] if sent.isprintable() else
                                         sent.encode("unicode_escape").decode()[:100])
    return GatewayError(415, f"Unsupported Content-Type {shown}: send the body as {accepted}.",
                        param=CONTENT_TYPE, code="unsupported_media_type")


def require_json(request: Request, accepted: str = "JSON (Content-Type: application/json)"
                 ) -> None:
    """415 unless the body is declared as JSON (any parameters; a charset must be UTF-8, the
    only encoding JSON has, RFC 8259)."""
    kind, params = media_type(request)
    charset = params.get("charset", "utf-8").lower()
    if not is_json(kind) or charset not in ("utf-8", "utf8"):
        raise unsupported_media_type(request, accepted)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than {limit} bytes.",
                        code="request_too_large")


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 when it is not a JSON object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object "
            "(Content-Type: application/json).",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body
