"""Durable async jobs: with ``redis_url``, an accepted ``Prefer: respond-async`` job is queued
(:mod:`proxy.fleet.queue`, a Redis Stream and its consumer group) and any instance runs it.

The accepting instance checks the request (its model, the key's permissions, rate and budget),
stores the job's ``queued`` snapshot and its queue entry in one step, and answers 202. Every
instance runs :class:`DurableJobs`: a consumer taking up to ``fleet.async_jobs`` entries at
once, a renewal of the entries it holds every third of a lease, and a take-over of entries
whose runner stopped renewing them for a lease.

A runner admits the job under its key (budget, the key's concurrency slot, this instance's
capacity; while those are full the job stays ``queued``), sets the job's *started mark* just
before its provider is first called, runs it, and writes its end: the terminal snapshot and
the result in one script, which then acknowledges the entry. An entry taken over with its mark
set may have reached a paid upstream: it is failed with ``instance_lost`` (its error says the
upstream may have been called) rather than run twice. Without the mark it is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.auth import Key
from proxy.core.errors import GatewayError, StoreUnavailable, upstream_maybe_called
from proxy.fleet.policy import background
from proxy.fleet.queue import Entry, JobQueue
from proxy.jobs.claims import Claim
from proxy.jobs.feed import JobFeed
from proxy.jobs.job import Job
from proxy.jobs.run import JobFinished, run_job
from proxy.limits.capacity import Slot
from proxy.limits.guard import Lease
from proxy.progress.hub import room_for
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.tracker import JobTracker
from proxy.request.bind import ParsedRequest
from proxy.request.bound import ImageRequest
from proxy.routing.table import ServedModel
from proxy.service.gateway import Gateway
from proxy.service.kept import KeptJob, keep_answer, worth_retrying
from proxy.service.queued import Queued, QueuedReply, decode, enqueue
from proxy.service.replies import Order, parameter_headers

log = logging.getLogger("proxy.service")

RETRY_SECONDS = 0.5  # a write the store could not take is tried again this often
# Admission refusals a queued job waits out (it stays queued): the key's concurrency slot,
# this instance's capacity, limits or a ledger that cannot be read right now.
WAITS = frozenset({"concurrency_limit_exceeded", "gateway_busy", "model_busy",
                   "limits_unavailable", "usage_ledger_unavailable", "store_unavailable"})
ADMIT_FIRST, ADMIT_MAX = 0.25, 2.0  # seconds between admission attempts of a waiting job

Bind = Callable[[Key, Order], tuple[ParsedRequest, ServedModel, ImageRequest]]
Admit = Callable[[Key, ServedModel, str, bool], Awaitable[tuple[Slot, Lease]]]
Finisher = Callable[[Key, Job, Lease | None, Slot], JobFinished]


class _Leave(Exception):
    """The runner gives its entry up without ending the job (this instance is stopping, or
    another one took the entry over): another instance takes it over."""


@dataclass(eq=False)
class Held:
    """An entry this instance holds: waiting to run, running, or its end being written."""

    entry: Entry
    task: asyncio.Task[None] | None = None
    job: Job | None = None  # once it runs
    lost: bool = False  # another instance took it over
    ending: tuple[JobSnapshot, dict[str, Any] | None] | None = field(default=None)


class DurableJobs:
    def __init__(self, gateway: Gateway, queue: JobQueue, *, bind: Bind, admit: Admit,
                 finisher: Finisher) -> None:
        self.gateway = gateway
        self.queue = queue
        self.runners = gateway.config.fleet.async_jobs
        self._bind, self._admit, self._finisher = bind, admit, finisher
        self.held: dict[str, Held] = {}  # entry id → what holds it
        self._backlog: list[Entry] = []  # taken over, waiting for a free runner
        self._room = asyncio.Event()  # a runner finished
        self._loops: list[asyncio.Task[None]] = []
        every = queue.lease_seconds / 3
        self.every = every
        # After an outage (or a start): a lease for every living runner to renew its entries.
        self.grace = queue.lease_seconds + queue.policy.probe_every

    # ------------------------------------------------------------------ accepting
    async def accept(self, key: Key, order: Order, served: ServedModel,
                     request: ImageRequest, claim: Claim | None) -> QueuedReply:
        """Queue the job (its id claimed already when the client chose it); 202 material."""
        headers = {**await self.gateway.guard.accept(key), **parameter_headers(request)}
        wire = await enqueue(self.gateway, self.queue, key, order, served.name, claim)
        # Its place in the queue, as of now (the stored snapshot has none: it would go stale).
        wire["queue_position"] = await self.position(order.job_id)

        async def view() -> dict[str, Any] | None:
            return wire

        return QueuedReply(order.job_id, headers, view)

    async def position(self, job_id: str) -> int | None:
        """A queued job's place in the queue (1: next) until a runner takes it; None after,
        or when Redis cannot say."""
        try:
            return await self.queue.position(job_id)
        except StoreUnavailable:
            return None

    def pending(self, job_id: str) -> dict[str, Any] | None:
        """A job that ended here whose end the store has not taken yet: its snapshot's wire
        form (and its ``owner``) with its result (reads here find it meanwhile)."""
        for held in self.held.values():
            if held.entry.job_id == job_id and held.ending is not None:
                snapshot, result = held.ending
                return {**snapshot.to_wire(), "owner": snapshot.owner, **(result or {})}
        return None

    # ------------------------------------------------------------------ the loops
    def start(self) -> None:
        self._loops = [background(self._consume()), background(self._take_over()),
                       background(self._renewal())]

    async def aclose(self) -> None:
        tasks = [*self._loops, *(h.task for h in self.held.values() if h.task is not None)]
        self._loops = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _free(self) -> int:
        running = sum(1 for held in self.held.values() if held.task is not None)
        return self.runners - running

    async def _consume(self) -> None:
        while not self.gateway.shutting_down:
            while self._backlog and self._free() > 0:
                self._run(self._backlog.pop(0))
            free = self._free()
            capacity = self.gateway.capacity
            if free <= 0 or capacity.running >= capacity.total:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), RETRY_SECONDS)
                continue
            try:
                entries = await self.queue.read(free)
            except StoreUnavailable:
                await asyncio.sleep(RETRY_SECONDS)  # logged by the policy
                continue
            except Exception:
                log.exception("reading the job queue failed")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for entry in entries:
                self._run(entry)

    async def _take_over(self) -> None:
        policy = self.queue.policy
        while not self.gateway.shutting_down:
            # Jittered, so instances started together do not all ask at the same moment.
            await asyncio.sleep(self.every * random.uniform(0.8, 1.0))
            if policy.up_for() < self.grace:
                await policy.check()  # learn when the store answers (the grace counts from there)
                continue
            try:
                entries, gone = await self.queue.take_over()
                await self.queue.drop(gone)
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("taking over queued jobs failed")
                continue
            for entry in entries:
                log.warning("job %s: its runner stopped; this instance takes it over (%s)",
                            entry.job_id, "its upstream call had begun: it fails"
                            if entry.started else "it had not begun: it runs")
                if entry.started or self._free() > 0:
                    self._run(entry)
                else:
                    self.held[entry.id] = Held(entry)  # renewed while it waits
                    self._backlog.append(entry)

    async def _renewal(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            ids = list(self.held)
            try:
                lost = await self.queue.renew(ids)
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("renewing %d queued jobs failed", len(ids))
                continue
            for entry_id in lost:
                self._lose(entry_id)

    def _lose(self, entry_id: str) -> None:
        """Another instance took the entry over (this one could not renew it for a lease)."""
        held = self.held.pop(entry_id, None)
        if held is None:
            return
        held.lost = True
        log.warning("job %s was taken over by another instance: this one stops it",
                    held.entry.job_id)
        if held.entry in self._backlog:
            self._backlog.remove(held.entry)
        if held.job is not None:
            self.gateway.hub.disown(held.job.id)
            self.gateway.runs.abort_job(held.job.id, upstream_maybe_called(None))
        elif held.task is not None:
            held.task.cancel()

    # ------------------------------------------------------------------ one job
    def _run(self, entry: Entry) -> None:
        held = self.held.get(entry.id) or Held(entry)
        self.held[entry.id] = held
        held.task = background(self._runner(held))

    async def _runner(self, held: Held) -> None:
        entry = held.entry
        try:
            await self._handle(held)
        except (_Leave, asyncio.CancelledError):
            pass  # the entry is left: another instance takes it over after a lease
        except Exception:
            log.exception("queued job %s failed outside its provider", entry.job_id)
        finally:
            if self.held.get(entry.id) is held:
                del self.held[entry.id]
            self._room.set()

    async def _handle(self, held: Held) -> None:
        entry = held.entry
        try:
            queued = decode(entry.payload)
        except ValueError as exc:
            log.error("queued job %s cannot be read (%s): it fails", entry.job_id, exc)
            await self._fail(held, None, GatewayError(
                500, "The gateway could not read this queued job; it has been logged.",
                type="server_error", code="internal_error"))
            return
        if entry.started:
            await self._fail(held, queued, upstream_maybe_called(entry.started))
            return
        key = self.gateway.keys.by_name(queued.key)
        if key is None:
            await self._fail(held, queued, GatewayError(
                401, "The key that sent this job is no longer configured on the instance "
                     "that took it.", code="invalid_api_key", retryable=False))
            return
        try:
            parsed, served, request = self._bind(key, queued.order)
            slot, lease = await self._admit_when_free(key, served, entry.job_id)
        except GatewayError as error:
            await self._fail(held, queued, error)
            return
        try:
            await self._start(held, queued, key, Job(
                id=entry.job_id, parsed=parsed, model=served, request=request, owner=key.name,
                kind="edit" if queued.order.editing else "generation",
                created=int(queued.created)), slot, lease)
        except BaseException:
            slot.release()
            await asyncio.shield(lease.release())
            raise

    async def _admit_when_free(self, key: Key, served: ServedModel,
                               job_id: str) -> tuple[Slot, Lease]:
        delay = ADMIT_FIRST
        while True:
            if self.gateway.shutting_down:
                raise _Leave
            try:
                return await self._admit(key, served, job_id, True)
            except GatewayError as error:
                if error.code not in WAITS:
                    raise
            await asyncio.sleep(delay)
            delay = min(ADMIT_MAX, delay * 2)

    async def _until_stored(self, what: Callable[[], Awaitable[Any]]) -> Any:
        """``what()``, tried again while the store is away (the entry stays held meanwhile)."""
        while True:
            try:
                return await what()
            except StoreUnavailable:
                if self.gateway.shutting_down:
                    raise _Leave from None
                await asyncio.sleep(RETRY_SECONDS)

    async def _start(self, held: Held, queued: Queued, key: Key, job: Job, slot: Slot,
                     lease: Lease) -> None:
        gateway, entry = self.gateway, held.entry
        # The last step before the provider is called: from here on the job is never run
        # again by another instance.
        if not await self._until_stored(lambda: self.queue.mark_started(entry)):
            raise _Leave  # another instance took it over meanwhile
        tracker = JobTracker(gateway.hub, job.id, job.model.name, job.owner,
                             job.model.config.expected_seconds, seq=queued.seq + 1,
                             created_at=queued.created)
        await self._until_stored(lambda: tracker.open(claim=True, replace=True))
        tracker.defer_end = True  # ended with its result, by its keeper
        events = run_job(job, tracker, gateway.reliability.events,
                         self._finisher(key, job, None, slot))
        gateway.metrics.jobs_in_flight.inc()
        held.job = job
        run = gateway.runs.start(job, events, on_end=slot.release, keep_running=True,
                                 feed=JobFeed(job.request.partial_images
                                              * max(1, job.request.n)))

        async def end(snapshot: JobSnapshot, result: dict[str, Any] | None) -> bool:
            return await self._write_end(held, snapshot, result)

        kept = KeptJob(job, tracker, run, queued.order.base_url, queued.claim, True, lease,
                       durable=end)
        done = asyncio.Event()

        async def keep() -> None:
            try:
                await keep_answer(kept, gateway)
            finally:
                done.set()

        gateway.runs.detach(keep, job)
        await asyncio.shield(done.wait())

    async def _write_end(self, held: Held, snapshot: JobSnapshot,
                         result: dict[str, Any] | None) -> bool:
        """The job's end and its result, together, then its entry acknowledged; tried until
        the store takes it. False when another instance had taken the entry over."""
        held.ending = (snapshot, result)
        raw_snapshot = orjson.dumps(snapshot.to_store())
        raw_result = None if result is None else orjson.dumps(result)
        try:
            while not held.lost:
                try:
                    written = await self.queue.finish(held.entry, raw_snapshot, raw_result)
                except StoreUnavailable:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                except Exception:
                    log.exception("job %s: writing its end failed", held.entry.job_id)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if not written:
                    log.warning("job %s was taken over by another instance: its end here is "
                                "not recorded", held.entry.job_id)
                return bool(written)
            return False
        finally:
            held.ending = None
            if self.held.get(held.entry.id) is held:
                del self.held[held.entry.id]  # nothing left to renew

    async def _fail(self, held: Held, queued: Queued | None, error: GatewayError) -> None:
        """End a queued job that does not run (any more) with ``error``."""
        entry = held.entry
        stored = await self._until_stored(lambda: self.gateway.hub.store.get(entry.job_id))
        if stored is None:
            now = time.time()
            stored = JobSnapshot(job_id=entry.job_id, seq=0, status="queued", percent=0.0,
                                 model="", created_at=now, updated_at=now,
                                 owner="" if queued is None else queued.key)
        if stored.terminal:  # ended already: only its entry is left
            await self._until_stored(lambda: self.queue.drop([entry.id]))
            return
        body = error.body()
        ended = stored.failed(body["error"])
        if not await self._write_end(held, ended, body):
            return
        # Its watchers hear it, on whichever instance they are connected to.
        self.gateway.hub.outbox.push(room_for(ended.owner, ended.job_id), ended.to_wire())
        log.warning("queued job %s of key '%s' ended failed (%s)", entry.job_id,
                    stored.owner, body["error"]["code"])
        claim = None if queued is None else queued.claim
        if claim is not None:
            claims, ttl = self.gateway.claims, self.gateway.config.jobs.replay_seconds
            record = {"detached": True}
            try:
                if worth_retrying(error):
                    await claims.release(entry.job_id, claim.token, record, ttl)
                else:
                    await claims.keep(entry.job_id, claim.token, record, ttl)
            except GatewayError:
                log.warning("job %s: its claim could not be settled", entry.job_id)
