"""A job: one image request from the moment it has an id until its last event.

``run_job`` is the single place a provider's event stream is consumed from. It guarantees the
stream ends with exactly one ``Completed`` or ``Failed`` (an adapter that raises, or stops early,
still produces a terminal event), so every writer can rely on that.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from proxy.errors import GatewayError
from proxy.events import Completed, Event, Failed
from proxy.params import ImageRequest

if TYPE_CHECKING:
    from proxy.models.served import ServedModel

log = logging.getLogger("proxy.jobs")

JobKind = Literal["generation", "edit"]


def new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Job:
    id: str
    request: ImageRequest
    model: ServedModel
    kind: JobKind = "generation"
    created: int = field(default_factory=lambda: int(time.time()))


async def run_job(job: Job) -> AsyncIterator[Event]:
    """The provider's events for ``job``, ending in exactly one terminal event."""
    events = job.model.provider.generate(job)
    try:
        async for event in events:
            yield event
            if isinstance(event, (Completed, Failed)):
                return
        yield Failed(GatewayError(
            502, "The upstream ended the job without a result.",
            type="upstream_error", code="upstream_incomplete",
        ))
    except GatewayError as exc:
        yield Failed(exc)
    except Exception:
        # A bug of ours: log it with the job id (never the payload) and answer honestly.
        log.exception("job %s failed inside provider %s", job.id, job.model.provider_name)
        yield Failed(GatewayError(
            500, "The gateway failed while running this job; it has been logged.",
            type="server_error", code="internal_error",
        ))
    finally:
        await events.aclose()
