"""``POST {base}/images/generations`` and ``POST {base}/images/edits``: read the request into an
order for the image service, then answer with the job's JSON, its SSE stream, or a 202."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.responses import Response

from proxy.auth import Key
from proxy.core.errors import GatewayError
from proxy.http.direct import Endpoint
from proxy.http.disconnect import CLIENT_CLOSED, ClientGone, ClientWatch
from proxy.http.edit_body import load_images, read_body
from proxy.http.responses import ImagesBody, JSONBody, error_response
from proxy.http.sse_writer import sse_response
from proxy.jobs.job import parse_job_id
from proxy.service.images import JOB_ID_HEADER, ImageService, Order
from proxy.service.stream import LiveStream


def job_id_for(request: Request) -> str:
    """The client's ``X-Job-Id`` if it sent one (400 unless it is a UUID), else a fresh id."""
    sent = request.headers.get(JOB_ID_HEADER)
    if sent is None:
        return request.state.request_id
    job_id = parse_job_id(sent)
    if job_id is None:
        raise GatewayError(400, f"Invalid '{JOB_ID_HEADER}' header: it must be a UUID.",
                           param=JOB_ID_HEADER, code="invalid_job_id")
    return job_id


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
    job_id = job_id_for(request)
    watched = JOB_ID_HEADER in request.headers
    detached = wants_async(request)
    server = gateway.config.server
    try:
        async with _refusals(service, key, job_id, watched):
            service.ensure_open()  # before reading (and fetching) what would be refused
            body = await read_body(request, edit=edit_route, json_limit=server.max_body_bytes,
                                   upload_limit=server.max_upload_bytes)
        # From here on the client is watched: if it leaves, the work is stopped, upstream too.
        async with ClientWatch(request):
            async with _refusals(service, key, job_id, watched):
                edit = await load_images(body, gateway.fetcher)
            submission = await service.submit(key, Order(
                job_id=job_id, fields=edit.fields, from_form=edit.from_form,
                editing=edit_route or bool(edit.images) or edit.mask is not None,
                images=edit.images, mask=edit.mask, listed=edit.listed,
                response_format=response_format, detached=detached, watched=watched,
                base_url=f"{request.url.scheme}://{request.url.netloc}"))
            if detached:
                return JSONBody(submission.accepted(), status_code=202, headers={
                    **submission.headers,
                    "location": f"{request.url.path.rsplit('/images/', 1)[0]}"
                                f"/images/jobs/{job_id}",
                    "preference-applied": "respond-async"})
            if not submission.job.request.stream:
                return ImagesBody(await submission.result(), headers=submission.headers)
            # The first event is awaited before committing to a 200 stream, so a request the
            # upstream refuses outright gets a real status code (the SDKs raise on it).
            stream = LiveStream(submission.job, submission.events())
            failed = await stream.open()
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if failed is not None:
        return error_response(failed, submission.headers)
    return sse_response(stream, submission.headers, gateway)


@asynccontextmanager
async def _refusals(service: ImageService, key: Key, job_id: str,
                    watched: bool) -> AsyncIterator[None]:
    """A request refused before its job exists: a watcher of its id learns it never will."""
    try:
        yield
    except GatewayError as error:
        if watched:
            await service.refuse(key, job_id, error)
        raise


def wants_async(request: Request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences)."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().split("=")[0].lower() == "respond-async" for p in prefer.split(","))
