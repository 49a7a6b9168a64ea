"""Running a job: ``run_job`` is the one place a job's event stream is consumed.

It feeds the progress tracker and the usage meter and guarantees the stream ends with exactly one
``Completed`` or ``Failed`` (an adapter that raises, or stops early, still produces a terminal
event), so every writer can rely on that. A consumer that stops early (the client went away)
marks the job cancelled and closes the provider's stream, which closes the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio

from proxy.billing.cost import job_cost
from proxy.billing.meter import UsageMeter
from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed
from proxy.jobs.job import Job
from proxy.jobs.telemetry import end_job_span, start_job_span
from proxy.progress.tracker import JobTracker
from proxy.request.echo import resolved_settings

log = logging.getLogger("proxy.jobs")

# Cleanup after a cancelled job (closing the upstream, telling a backend to stop) gets this long.
CLEANUP_SECONDS = 10.0

# Called once when a job is over, with its meter and whether the client went away first.
JobFinished = Callable[[UsageMeter, bool], Awaitable[None]]

# Where a job's events come from: the providers behind retries and fallbacks.
EventSource = Callable[[Job], AsyncGenerator[Event, None]]


def _priced(job: Job, images: int, completed: Completed) -> float | None:
    """The job's cost, once, before anyone reads its answer: the response, the ledger and the
    key's budget all use this number."""
    resolved = resolved_settings(job.request, job.model.rules, completed)
    return job_cost(job.model.price, images=images, completed=completed, resolved=resolved,
                    tier=job.request.resolution, kind=job.kind)


def meter_for(job: Job) -> UsageMeter:
    request = job.request
    return UsageMeter(job_id=job.id, key=job.owner, model=job.model.name,
                      provider=job.model.provider_name, kind=job.kind, n=request.n,
                      size=request.size, quality=request.quality, user=request.user,
                      metadata=request.metadata)


def _failure(exc: BaseException, job: Job) -> Failed:
    if isinstance(exc, GatewayError):
        return Failed(exc)
    # A bug of ours: log it with the job id (never the payload) and answer honestly.
    log.error("job %s failed inside provider %s", job.id, job.model.provider_name,
              exc_info=exc)
    return Failed(GatewayError(
        500, "The gateway failed while running this job; it has been logged.",
        type="server_error", code="internal_error"))


async def run_job(job: Job, tracker: JobTracker, source: EventSource,
                  finished: JobFinished | None = None) -> AsyncGenerator[Event, None]:
    """The provider's events for ``job``, ending in exactly one terminal event."""
    events = source(job)
    meter = meter_for(job)
    cancelled = False
    start_job_span(job)
    tracker.start_estimating()
    try:
        try:
            async for event in events:
                meter.observe(event)
                if isinstance(event, Completed):
                    job.cost = _priced(job, meter.images, event)
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
            end_job_span(job, meter, cancelled)
            if finished is not None:
                await finished(meter, cancelled)
