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
from typing import TYPE_CHECKING, Literal

import anyio

from proxy.errors import GatewayError
from proxy.events import Completed, Event, Failed
from proxy.params import ImageRequest
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
class Job:
    id: str
    request: ImageRequest
    model: ServedModel
    owner: str = ""
    kind: JobKind = "generation"
    created: int = field(default_factory=lambda: int(time.time()))


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


async def run_job(job: Job, tracker: JobTracker,
                  finished: JobFinished | None = None) -> AsyncGenerator[Event, None]:
    """The provider's events for ``job``, ending in exactly one terminal event."""
    events = job.model.provider.generate(job)
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
        cancelled = True
        with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
            await tracker.cancelled()
        raise
    finally:
        # Shielded: when the client went away this runs inside a cancelled scope, and the
        # provider still needs to close its upstream request (or interrupt its backend), the
        # key its concurrency slot back, and the ledger its record.
        with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
            await tracker.stop_estimating()
            await events.aclose()
            if finished is not None:
                await finished(meter, cancelled)
