"""A job: one image request from the moment it has an id until its last event."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from proxy.core.errors import GatewayError
from proxy.providers.base import Call, JobKind
from proxy.request.bind import ParsedRequest, bind
from proxy.request.bound import ImageRequest
from proxy.routing.table import ServedModel


def new_job_id() -> str:
    return str(uuid.uuid4())


def parse_job_id(value: Any) -> str | None:
    """The canonical lowercase form of a UUID, or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(slots=True)
class Job:
    id: str
    # What the client sent (kept so a fallback model can be held to its own rules), and the
    # request bound to the model that runs it now.
    parsed: ParsedRequest
    model: ServedModel
    request: ImageRequest
    owner: str = ""
    kind: JobKind = "generation"
    created: int = field(default_factory=lambda: int(time.time()))
    # Set when the gateway ends the job itself (shutting down): it then ends failed, not
    # cancelled, and its reader is told why.
    aborted: GatewayError | None = None
    # USD, priced once when the job completed (None: unknown, or not completed).
    cost: float | None = None

    def call(self) -> Call:
        """What the adapter of the job's current model gets for one attempt."""
        return Call(self.id, self.kind, self.request)

    def rebind(self, model: ServedModel) -> None:
        """Hand the job to another model (a fallback): the request is bound again, to that
        model's rules; a GatewayError means this model cannot take it."""
        self.request = bind(self.parsed, model)
        self.model = model
