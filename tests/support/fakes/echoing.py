"""A careless upstream: its error messages repeat the credentials it received.

Self-hosted OpenAI-compatible servers do this ("Incorrect API key provided: Bearer sk-…"), and
so do debugging proxies that answer a bad request with the headers they saw. Every POST, whatever
its path, is answered with ``status`` and a message quoting the ``Authorization`` header (or
``api-key`` / ``x-goog-api-key``, whichever credential came), the credential alone, and every
header received. The body is an error envelope both OpenAI's and Google's parsers read
(``body="json"``), plain text (``body="text"``), or, with ``body="stream"``, an HTTP 200 event
stream whose first event is that error (a failure mid-stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}


@dataclass
class EchoingUpstream:
    status: int = 401
    body: Literal["json", "text", "stream"] = "json"
    # The headers of every request received.
    received: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.status, self.body = 401, "json"
        self.received.clear()

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._answer, methods=["POST"])])

    def message(self, headers: dict[str, str]) -> str:
        name = next((h for h in CREDENTIAL_HEADERS if h in headers), "authorization")
        value = headers.get(name, "")
        credential = value.split(" ", 1)[-1]
        return (f"Incorrect API key provided: {value}. The key '{credential}' is not valid "
                f"here. Headers received: {headers!r}")

    async def _answer(self, request: Request) -> Response:
        await request.body()
        headers = dict(request.headers)
        self.received.append(headers)
        message = self.message(headers)
        if self.body == "text":
            return Response(message, status_code=self.status, media_type="text/plain")
        error = {"message": message, "type": "invalid_request_error", "param": None,
                 "code": None, "status": GOOGLE_STATUS.get(self.status, "UNKNOWN")}
        if self.body == "stream":
            frame = b"event: error\ndata: " + orjson.dumps({"type": "error", "error": error})
            return Response(frame + b"\n\n", media_type="text/event-stream")
        return Response(orjson.dumps({"error": error}), status_code=self.status,
                        media_type="application/json")
