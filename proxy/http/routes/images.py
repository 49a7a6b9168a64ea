"""``POST {base}/images/generations`` and ``POST {base}/images/edits``: read the request into an
order for the image service, then answer with the job's JSON, its SSE stream, or a 202.

The client may choose the job id: ``X-Job-Id`` (a UUID), or ``Idempotency-Key`` (any short
text: a UUID is the job id itself, anything else names one job per key). A repeat of the same
request under it attaches to its job or replays its answer; a stream resumes after the
``Last-Event-ID`` it sends.
"""

from __future__ import annotations

import uuid
from types import TracebackType

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from proxy.auth import Key
from proxy.core.errors import GatewayError, invalid_param
from proxy.http.direct import Endpoint
from proxy.http.disconnect import CLIENT_CLOSED, ClientGone, ClientWatch
from proxy.http.edit_body import load_images, read_body
from proxy.http.responses import ImagesBody, JSONBody, PassedBody, error_response
from proxy.http.sse_writer import last_event_id, sse_response
from proxy.jobs.job import parse_job_id
from proxy.service.images import JOB_ID_HEADER, ImageService, Order

IDEMPOTENCY_HEADER = "idempotency-key"
_IDEMPOTENCY_MAX = 255
# Job ids named by an Idempotency-Key that is not a UUID: uuid5 of the key's name and the text.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0e9f63-7a4c-4f0e-9a43-8f0d1f4f2a61")


def _idempotent_id(key: Key, value: str) -> str:
    if not 0 < len(value) <= _IDEMPOTENCY_MAX or not (value.isascii() and value.isprintable()):
        raise invalid_param(IDEMPOTENCY_HEADER, f"Invalid '{IDEMPOTENCY_HEADER}' header: 1 to "
                            f"{_IDEMPOTENCY_MAX} printable ASCII characters.",
                            code="invalid_idempotency_key")
    # Per key: two clients that both pick "order-1" never collide.
    return parse_job_id(value) or str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{key.name}\n{value}"))


def chosen_job_id(request: Request, key: Key) -> tuple[str, str] | None:
    """The job id the client chose and the header it came in (``X-Job-Id`` wins; both sent
    must name the same job); None when it chose none. 400 naming a malformed header."""
    sent = request.headers.get(JOB_ID_HEADER)
    idempotency = request.headers.get(IDEMPOTENCY_HEADER)
    named = None if idempotency is None else _idempotent_id(key, idempotency)
    if sent is None:
        return None if named is None else (named, IDEMPOTENCY_HEADER)
    job_id = parse_job_id(sent)
    if job_id is None:
        raise GatewayError(400, f"Invalid '{JOB_ID_HEADER}' header: it must be a UUID.",
                           param=JOB_ID_HEADER, code="invalid_job_id")
    if named is not None and named != job_id:
        raise invalid_param(IDEMPOTENCY_HEADER, f"'{IDEMPOTENCY_HEADER}' and '{JOB_ID_HEADER}' "
                            "name different jobs; send one of them.", code="invalid_job_id")
    return job_id, JOB_ID_HEADER


def image_endpoints(response_format: str | None) -> tuple[Endpoint, Endpoint]:
    """The generation and edit endpoints of one mount (its default response_format)."""

    async def create_generation(request: Request) -> Response:
        return await _create(request, edit_route=False, response_format=response_format)

    async def create_edit(request: Request) -> Response:
        return await _create(request, edit_route=True, response_format=response_format)

    return create_generation, create_edit


async def _create(request: Request, *, edit_route: bool,
                  response_format: str | None) -> Response:
    service: ImageService = request.app.state.service
    gateway = service.gateway
    key = gateway.keys.authenticate_request(request)
    chosen = chosen_job_id(request, key)
    if chosen is not None:
        request.state.request_id = chosen[0]  # x-request-id, the response id, the job id
    job_id = request.state.request_id
    watched = chosen is not None
    after = last_event_id(request)
    detached = wants_async(request)
    server = gateway.config.server
    try:
        async with _Refusals(service, key, job_id, watched):
            service.ensure_open()  # before reading (and fetching) what would be refused
            body = await read_body(request, edit=edit_route, json_limit=server.max_body_bytes,
                                   upload_limit=server.max_upload_bytes)
        # From here on the client is watched: if it leaves, the work is stopped, upstream too
        # (or, for a job it chose the id of, left to run on when so configured).
        watch = ClientWatch(request)  # one for the request: its response may go on with it
        async with watch:
            async with _Refusals(service, key, job_id, watched):
                edit = await load_images(body, gateway.fetcher)
            reply = await service.submit(key, Order(
                job_id=job_id, fields=edit.fields, from_form=edit.from_form,
                editing=edit_route or bool(edit.images) or edit.mask is not None,
                images=edit.images, mask=edit.mask, listed=edit.listed,
                response_format=response_format, detached=detached, watched=watched,
                id_param=chosen[1] if chosen else JOB_ID_HEADER,
                base_url=request_origin(request.scope)))
            if detached:
                return JSONBody(await reply.accepted(), status_code=202, headers={
                    **reply.headers,
                    "location": f"{request.url.path.rsplit('/images/', 1)[0]}"
                                f"/images/jobs/{job_id}",
                    "preference-applied": "respond-async"})
            if not reply.streamed:
                try:
                    answer = await reply.json_body()
                except GatewayError as error:  # the job failed: its error, with our headers
                    return error_response(error, reply.headers)
                if isinstance(answer, dict):
                    return ImagesBody(answer, headers=reply.headers)
                # Written as the upstream sends it, the client still watched.
                return PassedBody(answer, reply.headers, watch)
            # The first event is awaited before committing to a 200 stream, so a request the
            # upstream refuses outright gets a real status code (the SDKs raise on it).
            stream = reply.stream(after)
            failed = await stream.open()
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if failed is not None:
        return error_response(failed, reply.headers)
    return sse_response(stream, reply.headers, gateway, watch)


class _Refusals:
    """``async with _Refusals(...)``: a request refused before its job exists (a
    ``GatewayError`` leaving the block): a watcher of its id learns it never will. (A class,
    not a generator: it is entered twice per request.)"""

    __slots__ = ("job_id", "key", "service", "watched")

    def __init__(self, service: ImageService, key: Key, job_id: str, watched: bool) -> None:
        self.service, self.key, self.job_id, self.watched = service, key, job_id, watched

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.watched and isinstance(exc, GatewayError):
            await self.service.refuse(self.key, self.job_id, exc)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_origin(scope: Scope) -> str:
    """``scheme://host[:port]`` as the client addressed it, read the way Starlette's
    ``request.url`` reads it (the Host header, else the server's address), without parsing a
    whole URL twice per request."""
    scheme = scope.get("scheme", "http")
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scheme}://{value.decode('latin-1')}"
    server = scope.get("server")
    if server is None:
        return f"{scheme}://"
    host, port = server
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS.get(scheme) else \
        f"{scheme}://{host}:{port}"


def wants_async(request: Request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences)."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().split("=")[0].lower() == "respond-async" for p in prefer.split(","))
