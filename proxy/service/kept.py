"""Jobs that outlive the request that started them: a job whose client chose its id (its answer
is kept for repeats of the request and for streams that re-attach) and a detached job (its
answer is kept for ``GET {base}/images/jobs/{id}``).

Such a job runs in a task of its own into a feed (:class:`~proxy.jobs.feed.JobFeed`). Its
readers (the request that started it, repeats that attach to it, re-attached streams) follow
the feed; a keeper, started with the job, waits for its end and makes its :class:`Answer` once
(images hosted once, a stream's frames rendered once), then settles its claim: kept for
``jobs.replay_seconds`` when it succeeded or failed for good, released when it failed in a way
worth retrying (429, 5xx, a timeout) or was cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from proxy.core.errors import GatewayError
from proxy.core.events import Event, Failed, Image, b64_text
from proxy.jobs.claims import Claim
from proxy.jobs.job import Job
from proxy.jobs.runs import JobRun
from proxy.limits.guard import Lease
from proxy.progress.snapshot import JobSnapshot
from proxy.progress.tracker import JobTracker
from proxy.service.gateway import Gateway
from proxy.service.hosting import host_images
from proxy.service.results import NO_IMAGE, collect_response, response_of
from proxy.service.stream import JOB_CANCELLED, LiveStream, ReplayedStream, render_all

log = logging.getLogger("proxy.service")

# Set on answers a request did not start itself: it attached to a running job, or its answer
# was replayed.
REPLAYED_HEADER = "idempotent-replayed"
# A running job's claim lapses this long after its process stops renewing it (it died): then
# a repeat runs the job anew instead of waiting for an answer that will never come.
CLAIM_SECONDS = 30.0
RENEW_SECONDS = CLAIM_SECONDS / 3
# A detached job whose answer could not be made (a bug, logged): what its result says.
ANSWER_FAILED = GatewayError(500, "The gateway failed while keeping this job's answer; it "
                             "has been logged.", type="server_error", code="internal_error")


def worth_retrying(error: GatewayError) -> bool:
    """A failure a new attempt may not have: the upstream rate limiting, failing (5xx), or too
    slow. Its job id is freed, so the client's retry runs again."""
    return error.status in (408, 429) or error.status >= 500


def accepted_body(job_id: str, snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """The 202 body of a detached job, from its snapshot's wire form."""
    snapshot = snapshot or {}
    created = snapshot.get("created_at")
    return {"id": job_id, "object": "image.job", "model": snapshot.get("model"),
            "created": int(created) if created is not None else None,
            "status": snapshot.get("status", "queued"), "percent": snapshot.get("percent", 0.0)}


@dataclass(frozen=True, slots=True)
class Answer:
    """What a finished job answers every reader and repeat with: its images (``body``), its
    stream's frames (numbered from 1 when written), or the error it failed with before anything
    was answered. A detached job's result lives in the results store instead."""

    body: dict[str, Any] | None = None
    frames: list[bytes] | None = None
    error: GatewayError | None = None
    detached: bool = False

    def record(self) -> dict[str, Any]:
        """As kept in a claim (JSON-ready but for base64 bytes, which stores turn to text)."""
        out: dict[str, Any] = {}
        if self.body is not None:
            out["body"] = self.body
        if self.frames is not None:
            out["frames"] = self.frames
        if self.error is not None:
            out["error"] = {"status": self.error.status, "body": self.error.body(),
                            "headers": self.error.response_headers()}
        if self.detached:
            out["detached"] = True
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Answer:
        error = None
        if "error" in record:
            kept, body = record["error"], record["error"]["body"]["error"]
            error = GatewayError(kept["status"], body["message"], type=body["type"],
                                 param=body["param"], code=body["code"],
                                 headers=kept["headers"])
        frames = record.get("frames")
        return cls(body=record.get("body"), error=error, detached=bool(record.get("detached")),
                   frames=None if frames is None else
                   [frame if isinstance(frame, bytes) else frame.encode() for frame in frames])


# How a durable async job's end is written: its terminal snapshot and its result (or error
# body) together; False when another instance had taken the job over.
DurableEnd = Callable[[JobSnapshot, "dict[str, Any] | None"], Awaitable[bool]]


class KeptJob:
    """A job run into a feed, with the answer its keeper makes once it ends (None: cancelled)."""

    def __init__(self, job: Job, tracker: JobTracker, run: JobRun, base_url: str,
                 claim: Claim | None, detached: bool, lease: Lease | None = None,
                 durable: DurableEnd | None = None) -> None:
        self.job = job
        # A job of the durable queue: its end is written with its result, in one step; its
        # claim (taken when it was queued) lasts until then, unrenewed.
        self.durable = durable
        self.result: dict[str, Any] | None = None
        # A detached job's lease, released once its end is recorded (not when it ends).
        self.lease = lease
        self.tracker = tracker
        self.run = run
        self.base_url = base_url
        self.claim = claim
        self.detached = detached
        self.answer: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()

    @property
    def events(self) -> list[Event]:
        assert self.run.feed is not None
        return self.run.feed.events


async def collect_answer(job: Job, events: AsyncIterator[Event] | list[Event],
                         gateway: Gateway, base_url: str) -> dict[str, Any]:
    """The job's response body (of its events, or of the events already read), its images
    hosted when the client asked for URLs; raises the job's ``GatewayError`` when it failed."""
    body = (response_of(job, events) if isinstance(events, list)
            else await collect_response(job, events))
    if job.request.host_images:
        await host_images(body, job.id, gateway.store, base_url)
    return body


async def make_answer(kept: KeptJob, gateway: Gateway) -> tuple[Answer | None, bool]:
    """The ended job's answer (None when it was cancelled), and whether it failed in a way
    worth retrying."""
    assert kept.run.feed is not None
    terminal = kept.run.feed.terminal
    if terminal is None:
        return None, True
    job, events = kept.job, kept.events
    if job.request.stream:
        if isinstance(events[0], Failed):  # failed before the stream began: a status code
            return Answer(error=events[0].error), worth_retrying(events[0].error)
        failure = terminal.error if isinstance(terminal, Failed) else (
            None if any(isinstance(e, Image) for e in events) else NO_IMAGE)
        return (Answer(frames=render_all(job, events)),
                failure is not None and worth_retrying(failure))
    try:
        body = await collect_answer(job, events, gateway, kept.base_url)
    except GatewayError as error:
        return Answer(error=error), worth_retrying(error)
    for item in body.get("data", []):
        if "b64_json" in item:
            item["b64_json"] = b64_text(item["b64_json"])  # kept as JSON
    return Answer(body=body), False


async def keep_answer(kept: KeptJob, gateway: Gateway) -> None:
    """The keeper: wait for the job's end, make its answer, keep it (results store, claim), and
    hand it to the readers waiting for it."""
    answer: Answer | None = None
    failure: dict[str, Any] | None = ANSWER_FAILED.body()
    try:
        await _run_out(kept, gateway)
        answer, retry = await make_answer(kept, gateway)
        if kept.detached and answer is not None:
            # As GET {base}/images/jobs/{id} shows it: the ImagesResponse, or the error.
            result = answer.error.body() if answer.error else {"result": answer.body}
            if kept.durable is None:
                await gateway.results.put(kept.job.id, result)
            else:
                kept.result = result  # written with its end
        failure = None
        if kept.claim is not None:
            await _settle(kept, gateway, answer, retry)
    finally:
        if kept.detached:
            # Only now does its end become visible: its result is there to be read with it.
            await _conclude(kept, gateway, failure)
        if not kept.answer.done():
            kept.answer.set_result(answer)


async def _conclude(kept: KeptJob, gateway: Gateway, failure: dict[str, Any] | None) -> None:
    """End a detached job's snapshot, held back until its result was stored; ``failure``
    (its answer could not be made) is stored as its result and ends it failed."""
    with anyio.CancelScope(shield=True):
        try:
            if kept.durable is not None:
                result = kept.result if failure is None else failure
                durable = kept.durable

                async def write(snapshot: JobSnapshot) -> bool:
                    return await durable(snapshot, result)

                await kept.tracker.conclude(None if failure is None else failure["error"],
                                            write=write)
            else:
                if failure is not None:
                    with contextlib.suppress(Exception):
                        await gateway.results.put(kept.job.id, failure)
                await kept.tracker.conclude(None if failure is None else failure["error"])
        except Exception:
            log.exception("job %s: its end could not be recorded", kept.job.id)
        if kept.lease is not None:
            await kept.lease.release()


async def _run_out(kept: KeptJob, gateway: Gateway) -> None:
    """Wait for the job's end, renewing its claim meanwhile."""
    feed = kept.run.feed
    assert feed is not None
    while not feed.ended:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.finished(), RENEW_SECONDS)
        if not feed.ended and kept.claim is not None and kept.durable is None:
            try:
                await gateway.claims.renew(kept.job.id, kept.claim.token, CLAIM_SECONDS)
            except GatewayError:
                log.warning("job %s: its claim could not be renewed", kept.job.id)


async def _settle(kept: KeptJob, gateway: Gateway, answer: Answer | None, retry: bool) -> None:
    assert kept.claim is not None
    claims, ttl = gateway.claims, gateway.config.jobs.replay_seconds
    kept_answer = answer if answer is None or not kept.detached else Answer(detached=True)
    record = None if kept_answer is None else kept_answer.record()
    try:
        if retry or record is None:
            await claims.release(kept.job.id, kept.claim.token, record, ttl)
        else:
            await claims.keep(kept.job.id, kept.claim.token, record, ttl)
    except GatewayError:
        # Its store is away: the claim lapses with its time limit; repeats until then wait.
        log.warning("job %s: its claim could not be settled", kept.job.id)


class Attached:
    """A reader of a kept job running in this process: the request that started it, or a
    repeat of it."""

    def __init__(self, kept: KeptJob, headers: dict[str, str]) -> None:
        self.kept = kept
        self.headers = headers
        self.job_id = kept.job.id
        self.streamed = kept.job.request.stream

    async def result(self) -> dict[str, Any]:
        """The job's response body (the same for every reader); raises its error. Leaving
        while it runs may cancel it (its last reader, unless it keeps running)."""
        async with self.kept.run.reading():
            answer = await asyncio.shield(self.kept.answer)
        return answer_body(answer)

    async def json_body(self) -> dict[str, Any]:
        return await self.result()

    async def accepted(self) -> dict[str, Any]:
        """The 202 body of a detached job: where to find it, and how far it is."""
        job, wire = self.kept.job, self.kept.tracker.wire()
        return {"id": job.id, "object": "image.job", "model": job.model.name,
                "created": job.created, "status": wire["status"], "percent": wire["percent"]}

    def stream(self, after: int = 0) -> LiveStream:
        return LiveStream(self.kept.job, self.kept.run.follow(), after)


def answer_body(answer: Answer | None) -> dict[str, Any]:
    if answer is None:
        raise JOB_CANCELLED
    if answer.error is not None:
        raise answer.error
    if answer.body is None:
        raise JOB_CANCELLED
    return answer.body


class Replayed:
    """A repeat of a request whose job has ended: its kept answer, again."""

    def __init__(self, job_id: str, answer: Answer, headers: dict[str, str], streamed: bool,
                 view: Callable[[], Awaitable[dict[str, Any] | None]]) -> None:
        self.job_id = job_id
        self.answer = answer
        self.headers = headers
        self.streamed = streamed
        self._view = view

    async def result(self) -> dict[str, Any]:
        return answer_body(self.answer)

    async def json_body(self) -> dict[str, Any]:
        return await self.result()

    async def accepted(self) -> dict[str, Any]:
        return accepted_body(self.job_id, await self._view())

    def stream(self, after: int = 0) -> ReplayedStream:
        return ReplayedStream(self.answer.frames, self.answer.error, after)
