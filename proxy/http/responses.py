"""Response helpers: orjson bodies and the OpenAI error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from proxy.core.errors import GatewayError


class JSONBody(Response):
    """JSON via orjson: ~25x faster than the stdlib on multi-megabyte base64 bodies."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> JSONBody:
    merged = {**(headers or {}), **error.response_headers()}
    return JSONBody(error.body(), status_code=error.status, headers=merged)
