"""Submitting an image job: authorise → bind the request to a model → admit (limits) → run →
finish (cost, spend, usage, metrics).

Attached JSON, streamed and asynchronous jobs all go through :meth:`ImageService.submit`; HTTP
only reads the request into an :class:`Order` and writes the reply's events or result back.
Nothing here knows about HTTP, so the whole path runs in a test without a server.

A job id the client chose (``X-Job-Id``, ``Idempotency-Key``) is an idempotency key. It is
reserved (:mod:`proxy.jobs.claims`) only when its job really starts, so a request refused before
that leaves it free. A repeat of the same request (same fingerprint, same key) attaches to the
running job or replays its kept answer: one upstream call, one charge. Any other request under
a used id is a 409. Such a job runs into a feed for any number of readers
(:mod:`proxy.service.kept`); in another process of a fleet, a repeat waits for the job to end
(polling the shared claim) and then replays its answer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from proxy.auth import Key
from proxy.billing.meter import UsageMeter
from proxy.core.errors import GatewayError, StoreUnavailable, invalid_param
from proxy.core.events import Failed
from proxy.jobs.claims import Claim
from proxy.jobs.feed import JobFeed
from proxy.jobs.job import Job
from proxy.jobs.run import JobFinished, run_job
from proxy.limits.capacity import Slot
from proxy.limits.guard import Lease
from proxy.progress.tracker import JobTracker
from proxy.request.bind import ParsedRequest, bind
from proxy.request.bound import ImageRequest
from proxy.request.fingerprint import fingerprint
from proxy.request.parse import parse_params
from proxy.routing.table import ServedModel
from proxy.service.durable import DurableJobs
from proxy.service.gateway import Gateway
from proxy.service.joblog import log_finished
from proxy.service.kept import (
    CLAIM_SECONDS,
    REPLAYED_HEADER,
    Answer,
    Attached,
    KeptJob,
    Replayed,
    keep_answer,
)
from proxy.service.queued import QueuedReply
from proxy.service.replies import (
    JOB_ID_HEADER,
    JobStream,
    Order,
    Reply,
    Submission,
    conflict,
    not_found,
    not_streamed,
    parameter_headers,
)
from proxy.service.spending import require_known_cost
from proxy.service.stream import LiveStream, ReplayedStream

__all__ = ["JOB_ID_HEADER", "ImageService", "Order", "Reply"]

log = logging.getLogger("proxy.service")

# Seconds a request refused during shutdown is told to wait before it is sent again.
SHUTDOWN_RETRY_AFTER = 5
# How often a repeat waiting for a job that runs in another process asks about it (seconds).
POLL_FIRST, POLL_MAX = 0.02, 1.0


@dataclass(slots=True)
class Pending:
    """A client-chosen id this process claimed: its job starting (``started``: the job, or None
    when it was refused) and then running, until its answer is settled."""

    claim: Claim
    started: asyncio.Future[KeptJob | None]


def _ledger_outcome(written: asyncio.Future[None]) -> None:
    """A record the ledger could not write has been logged by its writer; reading the error
    here keeps asyncio from reporting it a second time."""
    if not written.cancelled():
        written.exception()


class ImageService:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # Client-chosen ids this process claimed, from the claim until their answer is settled.
        self.live: dict[str, Pending] = {}
        # With Redis: async jobs are queued, and any instance runs them.
        self.durable = None if gateway.queue is None else DurableJobs(
            gateway, gateway.queue, bind=self._bind, admit=self._admit,
            finisher=self._finisher)

    def start(self) -> None:
        """Start taking queued async jobs (with Redis)."""
        if self.durable is not None:
            self.durable.start()

    async def aclose(self) -> None:
        if self.durable is not None:
            await self.durable.aclose()

    def ensure_open(self) -> None:
        """Refuse a new job while the gateway drains (SIGTERM): 503 ``server_shutting_down``;
        the official SDKs retry after ``retry-after``, by then on another instance."""
        if self.gateway.shutting_down:
            raise GatewayError(503, "The gateway is shutting down; send the request again to "
                               "another instance or in a moment.", type="server_error",
                               code="server_shutting_down",
                               headers={"retry-after": str(SHUTDOWN_RETRY_AFTER)})

    async def submit(self, key: Key, order: Order) -> Reply:
        """Start the job ``order`` describes for ``key`` (or, for a repeat under a client-chosen
        id, attach to it or replay its answer); a ``GatewayError`` when it is refused (a
        watcher of a client-chosen id then learns that the job will never run)."""
        try:
            self.ensure_open()
            parsed, served, request = self._bind(key, order)
            if order.watched:
                return await self._submit_chosen(key, order, parsed, served, request)
            if order.detached and self.durable is not None:
                return await self.durable.accept(key, order, served, request, None)
            slot, lease = await self._admit(key, served, order.job_id)
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

    def _bind(self, key: Key, order: Order) -> tuple[ParsedRequest, ServedModel, ImageRequest]:
        known, unknown = parse_params(order.fields, from_form=order.from_form)
        parsed = ParsedRequest(known, unknown, order.response_format, order.editing,
                               order.images, order.mask, order.listed)
        served = self.gateway.models.resolve(known.get("model"))
        request = bind(parsed, served)
        key.require("images:edit" if order.editing else "images")
        key.require_model(known.get("model") or served.name, served.name)
        require_known_cost(key, self.gateway.models, served)
        if order.detached and request.stream:
            raise invalid_param("stream", "A job answered asynchronously (Prefer: "
                                "respond-async) cannot also be streamed.")
        return parsed, served, request

    async def _admit(self, key: Key, served: ServedModel, job_id: str,
                     queued: bool = False) -> tuple[Slot, Lease]:
        """A capacity slot and the key's admission (its lease on the job, in a fleet);
        ``queued``: a job of the durable queue, its request counted when it was accepted."""
        gateway = self.gateway
        slot = gateway.capacity.acquire(served.name, served.config.max_concurrent_jobs)
        try:
            return slot, await gateway.guard.admit(key, job_id, queued)
        except BaseException:
            slot.release()
            raise

    async def _submit_chosen(self, key: Key, order: Order, parsed: ParsedRequest,
                             served: ServedModel, request: ImageRequest) -> Reply:
        """A client-chosen id: start its job, attach to it, or replay its answer."""
        claim = Claim(fingerprint(key.name, parsed, detached=order.detached), key.name,
                      uuid.uuid4().hex, stream=request.stream)
        repeat = {**parameter_headers(request), REPLAYED_HEADER: "true"}
        queued = order.detached and self.durable is not None
        # A queued job's claim lasts until its runner settles it, wherever that runs.
        hold = self.gateway.config.jobs.retention_seconds if queued else CLAIM_SECONDS
        while True:
            pending = self.live.get(order.job_id)
            if pending is not None:  # claimed here: attach once it started
                if (pending.claim.owner, pending.claim.fingerprint) != (
                        claim.owner, claim.fingerprint):
                    raise conflict(order.job_id, order.id_param)
                kept = await asyncio.shield(pending.started)
                if kept is not None:
                    return Attached(kept, repeat)
                continue  # refused before it started: the id is free again
            held = await self.gateway.claims.claim(order.job_id, claim, hold)
            if held is None and queued:
                return await self._queue_chosen(key, order, served, request, claim)
            if held is None:
                return await self._start_chosen(key, order, Job(
                    id=order.job_id, parsed=parsed, model=served, request=request,
                    owner=key.name, kind="edit" if order.editing else "generation"), claim)
            if (held.owner, held.fingerprint) != (claim.owner, claim.fingerprint):
                raise conflict(order.job_id, order.id_param)
            if not held.running:
                return self._replay(key, order.job_id, held, repeat)
            if queued:  # queued or running somewhere in the fleet: 202, as it is now
                return QueuedReply(order.job_id, repeat, partial(self.job_view, key,
                                                                  order.job_id))
            await self._until_settled(order.job_id)  # its job runs in another process

    async def _start_chosen(self, key: Key, order: Order, job: Job, claim: Claim) -> Reply:
        """The id is ours: admit the job and start it, or give the id back."""
        pending = Pending(claim, asyncio.get_running_loop().create_future())
        self.live[order.job_id] = pending
        try:
            slot, lease = await self._admit(key, job.model, job.id)
            try:
                started = await self._start(key, job, lease, slot, order, claim)
            except BaseException:
                slot.release()
                await lease.release()
                raise
        except BaseException:
            # Never started: the id is free again (and a repeat waiting here tries it anew).
            del self.live[order.job_id]
            pending.started.set_result(None)
            try:
                await asyncio.shield(self.gateway.claims.release(order.job_id, claim.token,
                                                                 None, 0))
            except GatewayError:  # its store is away: the claim lapses by itself, soon
                log.warning("job %s: its claim could not be given back", order.job_id)
            raise
        assert isinstance(started, Attached)
        pending.started.set_result(started.kept)
        return started

    async def _queue_chosen(self, key: Key, order: Order, served: ServedModel,
                            request: ImageRequest, claim: Claim) -> Reply:
        """The id is ours: queue its job, or give the id back."""
        assert self.durable is not None
        try:
            return await self.durable.accept(key, order, served, request, claim)
        except BaseException:
            try:
                await asyncio.shield(self.gateway.claims.release(order.job_id, claim.token,
                                                                 None, 0))
            except GatewayError:  # its store is away: the claim lapses by itself
                log.warning("job %s: its claim could not be given back", order.job_id)
            raise

    async def _until_settled(self, job_id: str) -> None:
        """Wait while ``job_id``'s job runs in another process (its claim lapses if that process
        dies), or until a job under it starts here."""
        delay = POLL_FIRST
        while job_id not in self.live:
            held = await self.gateway.claims.get(job_id)
            if held is None or not held.running:
                return
            await asyncio.sleep(delay)
            delay = min(POLL_MAX, delay * 2)

    def _replay(self, key: Key, job_id: str, held: Claim, headers: dict[str, str]) -> Replayed:
        assert held.answer is not None

        async def view() -> dict[str, Any] | None:
            return await self.job_view(key, job_id)

        return Replayed(job_id, Answer.from_record(held.answer), headers, held.stream, view)

    async def _start(self, key: Key, job: Job, lease: Lease, slot: Slot, order: Order,
                     claim: Claim | None = None) -> Reply:
        gateway = self.gateway
        # A client-chosen id may be watched already, and may have been used before (its last
        # attempt freed it): the new attempt's updates follow the old ones. An async job's id
        # is read at once from anywhere: it is stored before the job starts too.
        previous = await gateway.hub.find(job.id) if claim is not None else None
        tracker = JobTracker(gateway.hub, job.id, job.model.name, job.owner,
                             job.model.config.expected_seconds,
                             seq=0 if previous is None else previous.seq + 1)
        if not await tracker.open(claim=order.watched or order.detached,
                                  replace=claim is not None):
            raise conflict(job.id, order.id_param)
        if previous is not None and order.detached:
            await gateway.results.delete(job.id)  # the earlier attempt's answer
        headers = {**lease.headers, **parameter_headers(job.request)}
        # A detached job ends visibly only once its result is stored (its keeper concludes it).
        tracker.defer_end = order.detached
        # A detached job keeps its lease until its end is recorded (its keeper releases it):
        # if this process dies before, the fleet ends the job instead of leaving it running.
        events = run_job(job, tracker, gateway.reliability.events,
                         self._finisher(key, job, None if order.detached else lease, slot))
        gateway.metrics.jobs_in_flight.inc()
        if not (order.watched or order.detached):
            # An attached JSON job is read by its request: inline, in the request's task. Its
            # large images (a stream's final image) are written while the upstream sends them,
            # unless they are hosted.
            job.pieces = not job.request.host_images
            run = gateway.runs.start(job, events, on_end=slot.release,
                                     inline=not job.request.stream)
            return Submission(job, tracker, run, headers, order.base_url, gateway)
        feed = JobFeed(job.request.partial_images * max(1, job.request.n))
        run = gateway.runs.start(job, events, on_end=slot.release, feed=feed,
                                 keep_running=order.detached or self._finishes(key, job))
        kept = KeptJob(job, tracker, run, order.base_url, claim, order.detached,
                       lease if order.detached else None)
        gateway.runs.detach(lambda: self._keep(kept), job)
        return Attached(kept, headers)

    def _finishes(self, key: Key, job: Job) -> bool:
        """``on_disconnect``: the key's setting, else the model's, else the gateway's."""
        setting = (key.on_disconnect or job.model.config.on_disconnect
                   or self.gateway.config.jobs.on_disconnect)
        return setting == "finish"

    async def _keep(self, kept: KeptJob) -> None:
        try:
            await keep_answer(kept, self.gateway)
        finally:
            pending = self.live.get(kept.job.id)
            if pending is not None and pending.claim is kept.claim:
                del self.live[kept.job.id]

    async def reattach(self, key: Key, job_id: str, after: int) -> JobStream:
        """A stream that lost its connection, from the frame after ``after``: live when its
        job runs here, replayed once it ended (waiting for it when it runs elsewhere)."""
        while True:
            pending = self.live.get(job_id)
            if pending is not None and pending.claim.owner == key.name:
                kept = await asyncio.shield(pending.started)
                if kept is None:
                    continue
                if not kept.job.request.stream:
                    raise not_streamed(job_id)
                return LiveStream(kept.job, kept.run.follow(), after)
            held = await self.gateway.claims.get(job_id)
            if held is None or held.owner != key.name:
                raise not_found(job_id)
            if not held.stream:
                raise not_streamed(job_id)
            if held.answer is not None:
                answer = Answer.from_record(held.answer)
                return ReplayedStream(answer.frames, answer.error, after)
            if held.free:
                raise not_found(job_id)
            await self._until_settled(job_id)

    async def refuse(self, key: Key, job_id: str, error: GatewayError) -> None:
        """A request refused before its job started: a watcher already subscribed to its id
        must learn that the job will never run. Only its snapshot says so (when the id has
        none yet): the id itself stays free."""
        tracker = JobTracker(self.gateway.hub, job_id, model="", owner=key.name)
        try:
            if await tracker.open():
                await tracker.observe(Failed(error))
        except StoreUnavailable:
            pass  # nobody can be told now (the outage is logged once, by the store's policy)
        except Exception:  # best effort: the request's own error is what the client gets
            log.warning("job %s: its refusal could not be published", job_id, exc_info=True)

    def _finisher(self, key: Key, job: Job, lease: Lease | None, slot: Slot) -> JobFinished:
        """What happens when a job is over: its slot freed (and its lease, if given), its usage
        recorded, its cost booked against the key's budget, its metrics counted."""
        gateway = self.gateway

        async def finished(meter: UsageMeter, cancelled: bool) -> None:
            slot.release()
            if lease is not None:
                await lease.release()
            record = meter.finish(cancelled=cancelled, cost=job.cost)
            log_finished(job, record, meter, prompts=gateway.config.logs.prompts)
            metrics = gateway.metrics
            metrics.jobs_in_flight.dec()
            metrics.job_finished(record.model, record.provider, record.kind, record.status,
                                 record.error_code, record.latency_ms / 1000, record.cost,
                                 meter.image_bytes, meter.partial_bytes)
            if record.cost:
                gateway.guard.add_spend(key, record.cost, record.created_at)
            if gateway.usage is not None:
                # Queued now (written even if nobody waits), committed by the ledger's writer
                # in its next group; the answer does not wait for the disk.
                gateway.usage.record_nowait(record).add_done_callback(_ledger_outcome)

        return finished

    async def job_view(self, key: Key, job_id: str) -> dict[str, Any] | None:
        """A job's snapshot for its own key, or for an admin key whoever owns it (with a
        detached job's answer or error once it has one); None for an unknown job or, to any
        other key, another key's."""
        hub = self.gateway.hub
        owner = key.name
        ending = None if self.durable is None else self.durable.pending(job_id)
        if ending is not None and (key.admin or ending["owner"] == owner):
            return {name: value for name, value in ending.items() if name != "owner"}
        if key.admin:  # as on Socket.IO: admins see every key's jobs
            found = await hub.find(job_id)
            owner = found.owner if found is not None else owner
        snapshot = await hub.get(job_id, owner)
        if snapshot is None:
            return None
        # Only a finished job can have a result (a running one is answered without asking a
        # shared store that may be away).
        result = await self.gateway.results.get(job_id) if snapshot.terminal else None
        view = {**snapshot.to_wire(), **(result or {})}
        if (snapshot.status == "queued" and snapshot.queue_position is None
                and self.durable is not None):  # waiting in the fleet's queue: its place
            view["queue_position"] = await self.durable.position(job_id)
        return view

