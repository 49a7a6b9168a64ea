"""Response helpers: orjson bodies and the OpenAI error envelope."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.core.errors import GatewayError
from proxy.core.nonces import nonce
from proxy.http.disconnect import ClientGone, ClientWatch
from proxy.observability.logs import ABORTED_ON_PURPOSE
from proxy.service.passing import PassedAnswer

log = logging.getLogger("proxy.http")


class JSONBody(Response):
    """JSON via orjson: ~25x faster than the stdlib on multi-megabyte base64 bodies."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ImagesBody(Response):
    """An ``ImagesResponse`` whose large images arrived as base64 bytes (lifted out of the
    upstream's answer unparsed): the rest is serialised, and the bytes are sent between its
    pieces as they are, without a copy into one body."""

    media_type = "application/json"

    def __init__(self, content: dict[str, Any], status_code: int = 200,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = b""
        self._chunks = _spliced(content)
        size = str(sum(len(chunk) for chunk in self._chunks))
        self.init_headers({**(headers or {}), "content-length": size})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        last = len(self._chunks) - 1
        for number, chunk in enumerate(self._chunks):
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": number < last})


def _spliced(content: dict[str, Any]) -> list[bytes]:
    """The JSON of ``content`` in pieces: bytes images in ``data[]`` go between them as they
    are (pure base64, nothing to escape)."""
    data = content.get("data")
    blobs: dict[str, bytes] = {}
    if isinstance(data, list) and any(isinstance(item, dict) and
                                      isinstance(item.get("b64_json"), bytes) for item in data):
        tag = nonce()
        items = []
        for item in data:
            b64 = item.get("b64_json") if isinstance(item, dict) else None
            if isinstance(b64, bytes):
                marker = f"\x00spliced:{tag}:{len(blobs)}"
                blobs[marker] = b64
                item = {**item, "b64_json": marker}
            items.append(item)
        content = {**content, "data": items}
    skeleton = orjson.dumps(content)
    if not blobs:
        return [skeleton]
    chunks: list[bytes] = []
    done = 0
    for marker, blob in blobs.items():
        at = skeleton.index(orjson.dumps(marker), done)
        chunks += (skeleton[done:at + 1], blob)  # the opening quote stays, the marker goes
        done = at + len(orjson.dumps(marker)) - 1  # ...and its closing quote stays
    chunks.append(skeleton[done:])
    return chunks


class PassedBody(Response):
    """An ``ImagesResponse`` written while the upstream still sends it (chunked: its length is
    known only at its end). The client is watched meanwhile: when it leaves, the job stops and
    with it the upstream's answer. A job that fails after the start cannot be answered with
    an error any more: the body is left incomplete and the connection closed."""

    media_type = "application/json"

    def __init__(self, answer: PassedAnswer, headers: Mapping[str, str] | None = None,
                 watch: ClientWatch | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.answer = answer
        self.watch = watch  # the request's, when its endpoint watched already
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})

        async def body(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        job_id = self.answer.job.id
        try:
            async with self.watch or ClientWatch(Request(scope, receive)):
                last = await self.answer.write(body)
        except ClientGone:
            log.info("job %s: the client left while its answer was being written", job_id)
            return
        except GatewayError as error:
            abort_answer(scope, job_id, error, "after its answer began")
            return
        finally:
            await self.answer.aclose()
        await send({"type": "http.response.body", "body": last, "more_body": False})


# Where an error answer leaves its code in the request's scope state, for the request metrics
# (``RequestIdMiddleware``): a stream's error after its 200 is the job's, not the request's.
ERROR_CODE_STATE = "error_code"


def abort_answer(scope: Scope, job_id: str, error: GatewayError, when: str) -> None:
    """A job failed ``when`` its answer could no longer say so (a body or frame written in
    part): the response returns unfinished, and the server closes the connection of an
    unfinished answer, so the client cannot mistake what it got for a whole one (the SDKs
    raise). Logged once, its code noted for the request metrics."""
    log.warning("job %s failed %s (%s): connection aborted", job_id, when,
                error.code or error.type)
    state = scope.get("state")
    if state is not None:
        state[ERROR_CODE_STATE] = error.code or error.type
    ABORTED_ON_PURPOSE.set(True)  # the server's own error line would say it again


class ErrorBody(JSONBody):
    """OpenAI's error envelope; its code (or type) is noted in the request's state when sent."""

    def __init__(self, error: GatewayError, headers: dict[str, str] | None = None) -> None:
        super().__init__(error.body(), status_code=error.status,
                         headers={**(headers or {}), **error.response_headers()})
        self.error_code = error.code or error.type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        if state is not None:
            state[ERROR_CODE_STATE] = self.error_code
        await super().__call__(scope, receive, send)


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> JSONBody:
    return ErrorBody(error, headers)
