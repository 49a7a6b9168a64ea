"""``POST {base}/images/generations`` and ``POST {base}/images/edits``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from proxy.accounting import job_cost
from proxy.auth import Key
from proxy.edits.attach import attach_images
from proxy.edits.reading import EditInput, json_has_images, read_edit, read_json_images
from proxy.errors import GatewayError, invalid_param
from proxy.events import Failed
from proxy.gateway import Gateway
from proxy.jobs import Job, JobFinished, JobInput, run_job
from proxy.limits.guard import Lease
from proxy.params import parse_params
from proxy.progress.socket import parse_job_id
from proxy.progress.tracker import JobTracker
from proxy.request_rules import apply_rules
from proxy.responses import JSONBody, error_response
from proxy.routes.body import read_json_object
from proxy.runs import JobRun
from proxy.usage import UsageMeter
from proxy.writers.hosting import host_images
from proxy.writers.json_body import collect_response
from proxy.writers.sse_stream import sse_events

# A client may choose the job id (a UUID) so it can subscribe to progress before it POSTs.
JOB_ID_HEADER = "x-job-id"
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
    gateway: Gateway = request.app.state.gateway
    key = gateway.keys.authenticate_request(request)
    if gateway.shutting_down:
        raise GatewayError(503, "The gateway is shutting down; send the request again to "
                           "another instance or in a moment.", type="server_error",
                           code="server_shutting_down", headers={"retry-after": "5"})
    job_id = job_id_for(request)
    detached = wants_async(request)
    try:
        edit = await _read(request, gateway, edit_route)
        known, unknown = parse_params(edit.fields, from_form=edit.from_form)
        served = gateway.models.resolve(known.get("model"))
        image_request = apply_rules(known, unknown, served.name, served.rules,
                                    drop_unsupported=served.drop_unsupported,
                                    default_response_format=response_format)
        editing = edit_route or bool(edit.images) or edit.mask is not None
        key.require("images:edit" if editing else "images")
        key.require_model(known.get("model") or served.name, served.name)
        if editing:
            attach_images(image_request, served, edit.images, edit.mask, edit.listed)
        if detached and image_request.stream:
            raise invalid_param("stream", "A job answered asynchronously (Prefer: "
                                "respond-async) cannot also be streamed.")
        lease = await gateway.guard.admit(key)
    except GatewayError as error:
        if JOB_ID_HEADER in request.headers:
            await _fail_before_start(gateway, job_id, key.name, error)
        raise
    job = Job(id=job_id, request=image_request, model=served, owner=key.name,
              kind="edit" if editing else "generation",
              input=JobInput(known, unknown, response_format, edit.images, edit.mask,
                             edit.listed))
    try:
        return await respond(request, job, gateway, _finisher(gateway, key, job, lease),
                             lease.headers, detached=detached)
    except BaseException:
        await lease.release()  # the job never ran; its finisher will not be called
        raise


def _finisher(gateway: Gateway, key: Key, job: Job, lease: Lease) -> JobFinished:
    """What happens when a job is over: its slot freed, its cost booked, its usage recorded."""

    async def finished(meter: UsageMeter, cancelled: bool) -> None:
        await lease.release()
        cost = job_cost(job, meter.images, meter.completed) if meter.completed else None
        record = meter.finish(cancelled=cancelled, cost=cost)
        metrics = gateway.metrics
        metrics.jobs_in_flight.dec()
        metrics.requests.labels(record.model, record.provider, record.kind, record.status).inc()
        metrics.job_seconds.labels(record.model, record.provider).observe(
            record.latency_ms / 1000)
        metrics.image_bytes.labels("final").inc(meter.image_bytes)
        metrics.image_bytes.labels("partial").inc(meter.partial_bytes)
        if record.cost:
            gateway.guard.add_spend(key, record.cost, record.created_at)
        if gateway.usage is not None:
            await gateway.usage.record(record)

    return finished


async def _fail_before_start(gateway: Gateway, job_id: str, owner: str,
                             error: GatewayError) -> None:
    """A watcher already subscribed to this id must learn that the job will never run."""
    tracker = JobTracker(gateway.hub, job_id, model="", owner=owner)
    if await tracker.open():
        await tracker.observe(Failed(error))


async def respond(request: Request, job: Job, gateway: Gateway, finished: JobFinished,
                  headers: dict[str, str], *, detached: bool = False) -> Response:
    """Run the job and answer as JSON or SSE (or 202 for a detached job); errors before the
    first byte stay HTTP errors."""
    tracker = JobTracker(gateway.hub, job.id, job.model.name, job.owner,
                         job.model.config.expected_seconds)
    if not await tracker.open():
        raise GatewayError(409, f"Job id '{job.id}' is already in use.",
                           param=JOB_ID_HEADER, code="job_id_conflict")
    headers = dict(headers)
    if job.request.dropped:
        # Names come from the client: percent-encoded so any name fits in a header.
        headers["x-dropped-params"] = ",".join(quote(name, safe="-_.[]")
                                               for name in job.request.dropped)
    run = gateway.runs.start(job, run_job(job, tracker, finished, gateway.reliability.events))
    gateway.metrics.jobs_in_flight.inc()
    base_url = f"{request.url.scheme}://{request.url.netloc}"
    if detached:
        gateway.runs.detach(lambda: keep_result(gateway, job, run, base_url), job)
        return JSONBody(accepted(job, tracker), status_code=202, headers={
            **headers, "location": f"{request.url.path.rsplit('/images/', 1)[0]}"
                                   f"/images/jobs/{job.id}",
            "preference-applied": "respond-async"})
    events = run.stream()
    if not job.request.stream:
        async with aclosing(events):
            body = await _unless_disconnected(request, collect_response(job, events))
        if body is None:
            return Response(status_code=CLIENT_CLOSED)
        if job.request.host_images:
            await host_images(body, job, gateway.store, base_url)
        return JSONBody(body, headers=headers)

    # Wait for the job's first event before committing to a 200 stream, so a request the
    # upstream refuses outright gets a real status code (the SDKs raise on it).
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        return error_response(first.error, headers)
    return EventSourceResponse(
        _counted(sse_events(job, first, events), gateway),
        headers=headers,
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


def accepted(job: Job, tracker: JobTracker) -> dict[str, Any]:
    """The 202 body of a detached job: where to find it, and how far it is."""
    return {"id": job.id, "object": "image.job", "model": job.model.name,
            "created": job.created, **{k: v for k, v in tracker.snapshot.to_wire().items()
                                       if k in ("status", "percent")}}


async def keep_result(gateway: Gateway, job: Job, run: JobRun, base_url: str) -> None:
    """Read a detached job to its end and keep its answer (or error) for the jobs endpoint."""
    try:
        body = await collect_response(job, run.stream())
        if job.request.host_images:
            await host_images(body, job, gateway.store, base_url)
        await gateway.results.put(job.id, {"result": body})
    except GatewayError as error:
        await gateway.results.put(job.id, error.body())


def wants_async(request: Request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences)."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().split("=")[0].lower() == "respond-async" for p in prefer.split(","))


async def _unless_disconnected(request: Request, work: Any) -> Any:
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
