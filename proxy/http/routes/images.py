"""``POST {base}/images/generations`` and ``POST {base}/images/edits``: read the request into an
order for the image service, then answer with the job's JSON, its SSE stream, or a 202."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from proxy.core.errors import GatewayError
from proxy.core.events import Failed
from proxy.http.body import read_json_object
from proxy.http.edit_body import EditInput, json_has_images, read_edit, read_json_images
from proxy.http.responses import JSONBody, error_response
from proxy.http.sse_writer import sse_events
from proxy.jobs.job import parse_job_id
from proxy.service.gateway import Gateway
from proxy.service.images import JOB_ID_HEADER, ImageService, Order, Submission

CLIENT_CLOSED = 499  # nginx's "client closed request": nobody will read it, logs will


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


Endpoint = Callable[[Request], Awaitable[Response]]


def image_endpoints(response_format: str | None) -> tuple[Endpoint, Endpoint]:
    """The generation and edit endpoints of one mount (its default response_format)."""

    async def create_generation(request: Request) -> Response:
        return await _create(request, edit_route=False, response_format=response_format)

    async def create_edit(request: Request) -> Response:
        return await _create(request, edit_route=True, response_format=response_format)

    return create_generation, create_edit


async def _read(request: Request, gateway: Gateway, edit_route: bool) -> EditInput:
    server = gateway.config.server
    if edit_route:
        return await read_edit(request, gateway.fetcher, json_limit=server.max_body_bytes,
                               upload_limit=server.max_upload_bytes)
    body = await read_json_object(request, server.max_body_bytes)
    if json_has_images(body):
        # An image in a generation body makes it an edit, as published APIs define it.
        return await read_json_images(body, gateway.fetcher)
    return EditInput(body, [], None, from_form=False)


async def _create(request: Request, *, edit_route: bool,
                  response_format: str | None) -> Response:
    service: ImageService = request.app.state.service
    gateway = service.gateway
    key = gateway.keys.authenticate_request(request)
    job_id = job_id_for(request)
    watched = JOB_ID_HEADER in request.headers
    try:
        edit = await _read(request, gateway, edit_route)
    except GatewayError as error:
        if watched:
            await service.refuse(key, job_id, error)
        raise
    base_url = f"{request.url.scheme}://{request.url.netloc}"
    detached = wants_async(request)
    submission = await service.submit(key, Order(
        job_id=job_id, fields=edit.fields, from_form=edit.from_form,
        editing=edit_route or bool(edit.images) or edit.mask is not None, images=edit.images,
        mask=edit.mask, listed=edit.listed, response_format=response_format,
        detached=detached, watched=watched, base_url=base_url))
    if detached:
        return JSONBody(submission.accepted(), status_code=202, headers={
            **submission.headers,
            "location": f"{request.url.path.rsplit('/images/', 1)[0]}/images/jobs/{job_id}",
            "preference-applied": "respond-async"})
    if not submission.job.request.stream:
        return await _json(request, submission)
    return await _stream(submission, gateway)


async def _json(request: Request, submission: Submission) -> Response:
    """The job's answer as one JSON body; a client that hangs up first cancels the job."""
    body = await _unless_disconnected(request, submission.result())
    if body is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONBody(body, headers=submission.headers)


async def _stream(submission: Submission, gateway: Gateway) -> Response:
    """The job's events as SSE. The first event is awaited before committing to a 200 stream,
    so a request the upstream refuses outright gets a real status code (the SDKs raise on it)."""
    events = submission.events()
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        return error_response(first.error, submission.headers)
    return EventSourceResponse(
        _counted(sse_events(submission.job, first, events), gateway),
        headers=submission.headers,
        sep="\n",
        ping=gateway.config.server.sse_keepalive,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
    )


async def _counted(frames: AsyncIterator[bytes], gateway: Gateway) -> AsyncIterator[bytes]:
    """The SSE frames, counted in the open-streams gauge while they are written."""
    gateway.metrics.sse_streams.inc()
    try:
        async for frame in frames:
            yield frame
    finally:
        gateway.metrics.sse_streams.dec()


def wants_async(request: Request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences)."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().split("=")[0].lower() == "respond-async" for p in prefer.split(","))


async def _unless_disconnected(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work`` unless the client hangs up first; then cancel it and return None.

    Starlette does not notice a vanished client until it writes; image jobs run for minutes,
    so the connection is watched while the job runs and the work (and its upstream) stopped.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None  # noqa: B012 - the client is gone: there is nobody to answer
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
