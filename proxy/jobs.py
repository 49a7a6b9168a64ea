"""A job: one image request from the moment it has an id until its last event.

``run_job`` is the one place a provider's event stream is consumed. It feeds the progress
tracker and guarantees the stream ends with exactly one ``Completed`` or ``Failed`` (an adapter
that raises, or stops early, still produces a terminal event), so every writer can rely on that.
A consumer that stops early (the client went away) marks the job cancelled and closes the
provider's stream, which closes the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from proxy.edits.attach import attach_images
from proxy.edits.inputs import InputImage
from proxy.errors import GatewayError
from proxy.events import Completed, Event, Failed
from proxy.params import ImageRequest
from proxy.request_rules import apply_rules
from proxy.usage import UsageMeter

if TYPE_CHECKING:
    from proxy.models.served import ServedModel
    from proxy.progress.tracker import JobTracker

log = logging.getLogger("proxy.jobs")

JobKind = Literal["generation", "edit"]
# Cleanup after a cancelled job (closing the upstream, telling a backend to stop) gets this long.
CLEANUP_SECONDS = 10.0


def new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class JobInput:
    """What the client sent, kept so a fallback model can be held to its own rules."""

    known: dict[str, Any]
    unknown: dict[str, Any]
    response_format: str | None = None  # the mount's default
    images: list[InputImage] = field(default_factory=list)
    mask: InputImage | None = None
    listed: bool = False


@dataclass(slots=True)
class Job:
    id: str
    request: ImageRequest
    model: ServedModel
    owner: str = ""
    kind: JobKind = "generation"
    created: int = field(default_factory=lambda: int(time.time()))
    input: JobInput | None = None
    # Set when the gateway ends the job itself (shutting down): it then ends failed, not
    # cancelled, and its reader is told why.
    aborted: GatewayError | None = None

    def switch_to(self, model: ServedModel) -> None:
        """Hand the job to another model (a fallback): the request is validated again against
        that model's rules; a GatewayError means this model cannot take it."""
        if self.input is None:
            raise GatewayError(500, "The job's request is not kept.", type="server_error")
        given = self.input
        request = apply_rules(given.known, given.unknown, model.name, model.rules,
                              drop_unsupported=model.drop_unsupported,
                              default_response_format=given.response_format)
        if self.kind == "edit":
            attach_images(request, model, given.images, given.mask, given.listed)
        self.model, self.request = model, request


def _failure(exc: BaseException, job: Job) -> Failed:
    if isinstance(exc, GatewayError):
        return Failed(exc)
    # A bug of ours: log it with the job id (never the payload) and answer honestly.
    log.error("job %s failed inside provider %s", job.id, job.model.provider_name,
              exc_info=exc)
    return Failed(GatewayError(
        500, "The gateway failed while running this job; it has been logged.",
        type="server_error", code="internal_error"))


# Called once when a job is over, with its meter and whether the client went away first.
JobFinished = Callable[[UsageMeter, bool], Awaitable[None]]


# Where a job's events come from: its provider, or the provider behind retries and fallbacks.
EventSource = Callable[["Job"], AsyncGenerator[Event, None]]


def provider_events(job: Job) -> AsyncGenerator[Event, None]:
    return job.model.provider.generate(job)


async def run_job(job: Job, tracker: JobTracker, finished: JobFinished | None = None,
                  source: EventSource = provider_events) -> AsyncGenerator[Event, None]:
    """The provider's events for ``job``, ending in exactly one terminal event."""
    events = source(job)
    meter = UsageMeter.for_job(job)
    cancelled = False
    tracker.start_estimating()
    try:
        try:
            async for event in events:
                meter.observe(event)
                await tracker.observe(event)
                yield event
                if isinstance(event, (Completed, Failed)):
                    return
            final: Failed = Failed(GatewayError(
                502, "The upstream ended the job without a result.",
                type="upstream_error", code="upstream_incomplete"))
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as exc:
            final = _failure(exc, job)
        meter.observe(final)
        await tracker.observe(final)
        yield final
    except (GeneratorExit, asyncio.CancelledError):
        with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
            if job.aborted is not None:
                meter.observe(Failed(job.aborted))
                await tracker.observe(Failed(job.aborted))
            else:
                cancelled = True
                await tracker.cancelled()
        raise
    finally:
        # Shielded: when the client went away this runs inside a cancelled scope, and the
        # provider still needs to close its upstream request (or interrupt its backend), the
        # key its concurrency slot back, and the ledger its record.
        with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
            await tracker.stop_estimating()
            await events.aclose()
            # A fallback may have served the job: the ledger records the model that did.
            meter.model, meter.provider = job.model.name, job.model.provider_name
            if finished is not None:
                await finished(meter, cancelled)
