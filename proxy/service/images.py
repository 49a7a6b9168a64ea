"""Submitting an image job: authorise → bind the request to a model → admit (limits) → run →
finish (cost, spend, usage, metrics).

Attached JSON, streamed and asynchronous jobs all go through :meth:`ImageService.submit`; HTTP
only reads the request into an :class:`Order` and writes the :class:`Submission`'s events or
result back. Nothing here knows about HTTP, so the whole path runs in a test without a server.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from proxy.auth import Key
from proxy.billing.meter import UsageMeter
from proxy.core.errors import GatewayError, invalid_param
from proxy.core.events import Failed, b64_text
from proxy.images.inputs import InputImage
from proxy.jobs.job import Job
from proxy.jobs.run import JobFinished, run_job
from proxy.jobs.runs import JobRun
from proxy.limits.capacity import Slot
from proxy.limits.guard import Lease
from proxy.progress.tracker import JobTracker
from proxy.request.bind import ParsedRequest, bind
from proxy.request.parse import parse_params
from proxy.service.gateway import Gateway
from proxy.service.hosting import host_images
from proxy.service.results import collect_response

log = logging.getLogger("proxy.service")

# The header a client sends to choose the job id (named in errors about it).
JOB_ID_HEADER = "x-job-id"
# Seconds a request refused during shutdown is told to wait before it is sent again.
SHUTDOWN_RETRY_AFTER = 5


@dataclass(slots=True)
class Order:
    """An image request as the transport read it: the fields as sent, and the images."""

    job_id: str
    fields: dict[str, Any]
    # Form fields arrive as strings and are converted before they are checked.
    from_form: bool = False
    # An edit: the edit endpoint, or images (or a mask) in the body.
    editing: bool = False
    images: list[InputImage] = field(default_factory=list)
    mask: InputImage | None = None
    listed: bool = False
    # The response_format of the mount it came through, when the request names none.
    response_format: str | None = None
    # Answer at once (202) and keep the result for ``GET {base}/images/jobs/{id}``.
    detached: bool = False
    # The client chose the job id: someone may be watching it already.
    watched: bool = False
    # Where hosted image URLs point (the gateway's own address, as the client reached it).
    base_url: str = ""


@dataclass(slots=True)
class Submission:
    """A running job: read its events (attached) or its result; ``headers`` go to the client."""

    job: Job
    tracker: JobTracker
    run: JobRun
    headers: dict[str, str]
    base_url: str
    service: ImageService

    def events(self) -> Any:
        """The job's events, ending with its terminal one; leaving early cancels the job."""
        return self.run.stream()

    async def result(self) -> dict[str, Any]:
        """The job's ``ImagesResponse`` (images hosted when the client asked for URLs); raises
        the job's ``GatewayError`` when it failed."""
        return await self.service.answer(self.job, self.events(), self.base_url)

    def accepted(self) -> dict[str, Any]:
        """The 202 body of a detached job: where to find it, and how far it is."""
        wire = self.tracker.snapshot.to_wire()
        return {"id": self.job.id, "object": "image.job", "model": self.job.model.name,
                "created": self.job.created, "status": wire["status"],
                "percent": wire["percent"]}


def _ledger_outcome(written: asyncio.Future[None]) -> None:
    """A record the ledger could not write has been logged by its writer; reading the error
    here keeps asyncio from reporting it a second time."""
    if not written.cancelled():
        written.exception()


class ImageService:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def ensure_open(self) -> None:
        """Refuse a new job while the gateway drains (SIGTERM): 503 ``server_shutting_down``;
        the official SDKs retry after ``retry-after``, by then on another instance."""
        if self.gateway.shutting_down:
            raise GatewayError(503, "The gateway is shutting down; send the request again to "
                               "another instance or in a moment.", type="server_error",
                               code="server_shutting_down",
                               headers={"retry-after": str(SHUTDOWN_RETRY_AFTER)})

    async def submit(self, key: Key, order: Order) -> Submission:
        """Start the job ``order`` describes for ``key``; a ``GatewayError`` when it is refused
        (a watcher of a client-chosen id then learns that the job will never run)."""
        gateway = self.gateway
        try:
            self.ensure_open()
            known, unknown = parse_params(order.fields, from_form=order.from_form)
            parsed = ParsedRequest(known, unknown, order.response_format, order.editing,
                                   order.images, order.mask, order.listed)
            served = gateway.models.resolve(known.get("model"))
            request = bind(parsed, served)
            key.require("images:edit" if order.editing else "images")
            key.require_model(known.get("model") or served.name, served.name)
            if order.detached and request.stream:
                raise invalid_param("stream", "A job answered asynchronously (Prefer: "
                                    "respond-async) cannot also be streamed.")
            slot = gateway.capacity.acquire(served.name, served.config.max_concurrent_jobs)
            try:
                lease = await gateway.guard.admit(key)
            except BaseException:
                slot.release()
                raise
        except GatewayError as error:
            if order.watched:
                await self.refuse(key, order.job_id, error)
            raise
        job = Job(id=order.job_id, parsed=parsed, model=served, request=request, owner=key.name,
                  kind="edit" if order.editing else "generation")
        try:
            return await self._start(key, job, lease, slot, order)
        except BaseException:
            slot.release()  # the job never ran; its finisher will not be called
            await lease.release()
            raise

    async def _start(self, key: Key, job: Job, lease: Lease, slot: Slot,
                     order: Order) -> Submission:
        gateway = self.gateway
        tracker = JobTracker(gateway.hub, job.id, job.model.name, job.owner,
                             job.model.config.expected_seconds)
        # A client-chosen id may be watched already or taken; an async job's id is read at
        # once from anywhere: those are claimed in the shared store before the job starts.
        if not await tracker.open(claim=order.watched or order.detached):
            raise GatewayError(409, f"Job id '{job.id}' is already in use.",
                               param=JOB_ID_HEADER, code="job_id_conflict")
        headers = dict(lease.headers)
        if job.request.dropped:
            # Names come from the client: percent-encoded so any name fits in a header.
            headers["x-dropped-params"] = ",".join(quote(name, safe="-_.[]")
                                                   for name in job.request.dropped)
        # An attached JSON job is read whole by its request: inline, in the request's task.
        inline = not order.detached and not job.request.stream
        run = gateway.runs.start(job, run_job(job, tracker, gateway.reliability.events,
                                              self._finisher(key, job, lease, slot)),
                                 on_end=slot.release, inline=inline)
        gateway.metrics.jobs_in_flight.inc()
        submission = Submission(job, tracker, run, headers, order.base_url, self)
        if order.detached:
            gateway.runs.detach(lambda: self._keep_result(submission), job)
        return submission

    async def refuse(self, key: Key, job_id: str, error: GatewayError) -> None:
        """A request refused before its job started: a watcher already subscribed to its id
        must learn that the job will never run."""
        tracker = JobTracker(self.gateway.hub, job_id, model="", owner=key.name)
        if await tracker.open():
            await tracker.observe(Failed(error))

    async def answer(self, job: Job, events: Any, base_url: str) -> dict[str, Any]:
        """Collect ``events`` into the job's response body, hosting its images if asked."""
        async with aclosing(events):  # leaving early (a cancelled reader) cancels the job
            body = await collect_response(job, events)
        if job.request.host_images:
            await host_images(body, job.id, self.gateway.store, base_url)
        return body

    async def _keep_result(self, submission: Submission) -> None:
        """Read a detached job to its end and keep its answer (or error) for the jobs
        endpoint."""
        results = self.gateway.results
        try:
            body = await submission.result()
            for item in body.get("data", []):
                if "b64_json" in item:
                    item["b64_json"] = b64_text(item["b64_json"])  # kept as JSON
            await results.put(submission.job.id, {"result": body})
        except GatewayError as error:
            await results.put(submission.job.id, error.body())

    def _finisher(self, key: Key, job: Job, lease: Lease, slot: Slot) -> JobFinished:
        """What happens when a job is over: its slot freed, its usage recorded, its cost booked
        against the key's budget, its metrics counted."""
        gateway = self.gateway

        async def finished(meter: UsageMeter, cancelled: bool) -> None:
            slot.release()
            await lease.release()
            record = meter.finish(cancelled=cancelled, cost=job.cost)
            metrics = gateway.metrics
            metrics.jobs_in_flight.dec()
            metrics.job_finished(record.model, record.provider, record.kind, record.status,
                                 record.latency_ms / 1000, meter.image_bytes,
                                 meter.partial_bytes)
            if record.cost:
                gateway.guard.add_spend(key, record.cost, record.created_at)
            if gateway.usage is not None:
                # Queued now (written even if nobody waits), committed by the ledger's writer
                # in its next group; the answer does not wait for the disk.
                gateway.usage.record_nowait(record).add_done_callback(_ledger_outcome)

        return finished

    async def job_view(self, key: Key, job_id: str) -> dict[str, Any] | None:
        """A job's snapshot for its own key (with a detached job's answer or error once it has
        one); None for an unknown job or another key's."""
        snapshot = await self.gateway.hub.get(job_id, key.name)
        if snapshot is None:
            return None
        return {**snapshot.to_wire(), **(await self.gateway.results.get(job_id) or {})}

